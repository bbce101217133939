import { AsyncLocalStorage } from 'node:async_hooks'
import diagnosticsChannel from 'node:diagnostics_channel'
import type { ClientRequest, IncomingMessage } from 'node:http'
import { ProviderError, type ProviderErrorCode } from '../errors.ts'
import { parseRetryAfter } from './retry-after.ts'

/**
 * Map what node-vault (axios underneath) rejects with to a `ProviderError`.
 *
 * node-vault's `ApiResponseError` carries the response body, and axios errors carry
 * the request config, whose headers hold the Vault token and whose body may hold an
 * AppRole secret_id. None of that is copied: the resulting error has our own message,
 * the HTTP status (plus a fixed category word from Vault's error text) or the socket
 * error code as `providerCode`, and no `cause`.
 */

/** Longest Retry-After latchkey accepts from Vault (the retry loop's deadline bounds it further). */
export const VAULT_RETRY_AFTER_CAP_MS = 60_000

/*
 * node-vault resolves and rejects with the status and body only: response headers are
 * dropped, Retry-After with them. `withRetryAfter` runs one node-vault call and notes the
 * Retry-After of each answer to an http(s) request that call makes (node's
 * `http.client.request.start` channel, matched to the call through an AsyncLocalStorage);
 * a rejection of the call is then linked to the value, which `mapVaultError` reads.
 * The channel is subscribed only while a call is in flight, so requests of anything else in
 * the process cost nothing otherwise (and one store lookup while a Vault call runs).
 */
interface Seen {
  retryAfter: string | undefined
}

const calls = new AsyncLocalStorage<Seen>()
const retryAfterOf = new WeakMap<object, string>()
const REQUEST_START = 'http.client.request.start'
let inFlight = 0

function onRequestStart(message: unknown): void {
  const seen = calls.getStore()
  if (seen === undefined) return
  const request = (message as { request?: ClientRequest }).request
  request?.once('response', (res: IncomingMessage) => {
    const v = res.headers['retry-after']
    seen.retryAfter = Array.isArray(v) ? v[0] : v
  })
}

/** Run one node-vault call; if it rejects after an answer with Retry-After, `mapVaultError` sees that value. */
export async function withRetryAfter<T>(call: () => Promise<T>): Promise<T> {
  const seen: Seen = { retryAfter: undefined }
  if (inFlight++ === 0) diagnosticsChannel.subscribe(REQUEST_START, onRequestStart)
  try {
    return await calls.run(seen, call)
  } catch (err) {
    if (seen.retryAfter !== undefined && typeof err === 'object' && err !== null) retryAfterOf.set(err, seen.retryAfter)
    throw err
  } finally {
    if (--inFlight === 0) diagnosticsChannel.unsubscribe(REQUEST_START, onRequestStart)
  }
}

/** Raised when latchkey's own signal fires before Vault answered. */
export class VaultAbortedError extends Error {
  constructor() {
    super('aborted')
    this.name = 'AbortError'
  }
}

/** What the failed call was doing: decides how a 400/403/404 reads. */
export type VaultPhase = 'read' | 'login' | 'lookup' | 'renew'

interface Classified {
  status: number | undefined
  /** A fixed category word for Vault's error text, never the text itself. */
  category: string | undefined
  /** Socket / TLS error code (`ECONNREFUSED`, `DEPTH_ZERO_SELF_SIGNED_CERT`). */
  netCode: string | undefined
  aborted: boolean
}

const CATEGORIES: ReadonlyArray<[RegExp, string]> = [
  [/invalid token/i, 'invalid token'],
  [/permission denied/i, 'permission denied'],
  [/invalid role or secret id|invalid secret id|invalid role id/i, 'invalid role or secret ID'],
  [/invalid role name/i, 'invalid role name'],
  [/sealed/i, 'sealed'],
  [/rate limit/i, 'rate limited'],
  [/not renewable/i, 'not renewable'],
  [/no handler for route|unsupported path/i, 'no handler for route'],
  [/missing/i, 'missing input'],
]

const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ERR_TLS|ERR_SSL|EPROTO|HOSTNAME_MISMATCH/

function classify(err: unknown): Classified {
  if (err instanceof VaultAbortedError) return { status: undefined, category: undefined, netCode: undefined, aborted: true }
  const e = err as { response?: { statusCode?: unknown; body?: unknown }; code?: unknown; message?: unknown; name?: unknown }
  const status = typeof e?.response?.statusCode === 'number' ? e.response.statusCode : undefined
  let category: string | undefined
  if (status !== undefined) {
    const body = e.response?.body as { errors?: unknown } | undefined
    const first = Array.isArray(body?.errors) ? body.errors.find((x): x is string => typeof x === 'string') : undefined
    const text = first ?? ''
    category = CATEGORIES.find(([re]) => re.test(text))?.[1]
  }
  const netCode = typeof e?.code === 'string' && /^[A-Z0-9_]{2,64}$/.test(e.code) ? e.code : undefined
  return { status, category, netCode, aborted: e?.name === 'AbortError' || netCode === 'ERR_CANCELED' }
}

/** A 403 whose text says the token itself is bad (revoked/expired), not a policy denial. */
export function isInvalidToken(err: unknown): boolean {
  const c = classify(err)
  return c.status === 403 && c.category === 'invalid token'
}

/** The status and fixed category word of a Vault answer (for soft-delete detection and logs). */
export function vaultStatus(err: unknown): number | undefined {
  return classify(err).status
}

/**
 * Build the ProviderError for a failed Vault call. `what` names the thing (`secret
 * secret/data/app`, `AppRole login`) and `where` the provider and address; neither is secret.
 */
export function mapVaultError(err: unknown, phase: VaultPhase, what: string, where: string): ProviderError {
  if (err instanceof ProviderError) return err
  const c = classify(err)
  if (c.aborted) return new ProviderError('provider_timeout', `${where}: ${what}: Vault did not answer in time`, { providerCode: 'ABORTED' })
  if (c.status === undefined) {
    if (c.netCode !== undefined && TLS_CODES.test(c.netCode)) {
      return new ProviderError('provider_unavailable', `${where}: TLS verification of the Vault server failed (${c.netCode}); trust its CA with caFile (or upstream.caFile)`, {
        providerCode: c.netCode,
        retryable: false,
      })
    }
    if (c.netCode === 'ECONNABORTED' || c.netCode === 'ETIMEDOUT') {
      return new ProviderError('provider_timeout', `${where}: ${what}: Vault did not answer in time (${c.netCode})`, { providerCode: c.netCode })
    }
    return new ProviderError('provider_unavailable', `${where}: ${what}: cannot reach Vault${c.netCode ? ` (${c.netCode})` : ''}`, {
      providerCode: c.netCode ?? 'NETWORK',
    })
  }
  const providerCode = c.category ? `${c.status} ${c.category}` : String(c.status)
  const make = (code: ProviderErrorCode, message: string, retryable?: boolean, retryAfterMs?: number) =>
    new ProviderError(code, `${where}: ${message} (HTTP ${c.status}${c.category ? `, ${c.category}` : ''})`, {
      providerCode,
      ...(retryable === undefined ? {} : { retryable }),
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    })
  const auth = phase === 'login' || phase === 'lookup' || phase === 'renew'
  switch (true) {
    case c.status === 429:
      // Vault sends Retry-After with its rate-limit quotas (when its response headers are on).
      return make('throttled', `${what}: Vault rate-limited the request`, undefined, parseRetryAfter(typeof err === 'object' && err !== null ? retryAfterOf.get(err) : undefined, VAULT_RETRY_AFTER_CAP_MS))
    case c.status === 412:
      // Vault Enterprise performance standbys: the write has not replicated yet.
      return make('provider_unavailable', `${what}: Vault is not consistent yet`, true)
    case c.status >= 500:
      return make('provider_unavailable', c.category === 'sealed' ? `${what}: Vault is sealed` : `${what}: Vault answered with a server error`)
    case c.status === 403 && c.category === 'invalid token':
      return make('provider_auth_failed', `${what}: the Vault token is invalid, expired or revoked`)
    case c.status === 403 && auth:
      return make('provider_auth_failed', `${what}: Vault refused the login`)
    case c.status === 403:
      return make('access_denied', `${what}: the Vault policy does not allow reading it`)
    case c.status === 400 && auth:
      return make('provider_auth_failed', `${what}: Vault rejected the login`)
    case c.status === 404 && auth:
      return make('provider_config', `${what}: no such auth endpoint (check the auth mount)`, false)
    case c.status === 404:
      return make('secret_not_found', `${what} does not exist`)
    default:
      return make('provider_config', `${what}: Vault rejected the request`, false)
  }
}
