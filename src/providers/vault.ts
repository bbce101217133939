import path from 'node:path'
import { rootCertificates } from 'node:tls'
import type NodeVault from 'node-vault'
import { z } from 'zod'
import { duration } from '../values/schema.ts'
import { ProviderError } from '../errors.ts'
import { readCaFile } from './ca-file.ts'
import type { ProviderCheck, ProviderFactory, SecretProvider } from './provider.ts'
import { SecretValue } from './secret-value.ts'
import { isInvalidToken, mapVaultError, vaultStatus, withRetryAfter } from './vault-errors.ts'
import { raced, VaultTokenManager, type VaultAuth, type VaultAuthClient } from './vault-token-manager.ts'

const DEFAULT_JWT_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/token'

const tokenAuth = z
  .object({
    method: z.literal('token'),
    /** The token itself (prefer `tokenFile` or `${file:...}` over a literal). */
    token: z.string().min(1).optional(),
    /** File holding the token (re-read at each re-login, so a Vault Agent sink works). */
    tokenFile: z.string().min(1).optional(),
  })
  .strict()

const approleAuth = z
  .object({
    method: z.literal('approle'),
    roleId: z.string().min(1),
    /** The secret_id (prefer `secretIdFile`). Omit both for a role with `bind_secret_id=false`. */
    secretId: z.string().min(1).optional(),
    /** File holding the secret_id, re-read at each login. */
    secretIdFile: z.string().min(1).optional(),
    /** Auth mount path. Default `approle`. */
    mount: z.string().min(1).default('approle'),
  })
  .strict()

const kubernetesAuth = z
  .object({
    method: z.literal('kubernetes'),
    /** The Vault role bound to this pod's service account. */
    role: z.string().min(1),
    /** Service-account JWT, re-read at each login (projected tokens rotate). */
    jwtFile: z.string().min(1).default(DEFAULT_JWT_FILE),
    /** Auth mount path. Default `kubernetes`. */
    mount: z.string().min(1).default('kubernetes'),
  })
  .strict()

const optionsSchema = z
  .object({
    type: z.literal('vault'),
    /** Vault address (`https://vault.example.com:8200`); else `VAULT_ADDR`. */
    address: z.url({ protocol: /^https?$/ }).optional(),
    /** Vault Enterprise / HCP namespace (`X-Vault-Namespace`); else `VAULT_NAMESPACE`. */
    namespace: z.string().min(1).optional(),
    /** PEM CA bundle trusted for Vault's certificate, on top of the system store; else `VAULT_CACERT`, else `upstream.caFile`. */
    caFile: z.string().min(1).optional(),
    /** How to log in. Default: `{ method: token }` with `VAULT_TOKEN`. */
    auth: z.discriminatedUnion('method', [tokenAuth, approleAuth, kubernetesAuth]).optional(),
    /**
     * KV engine version of the refs: `2` (ref `secret/data/app`), `1` (ref `kv/app`) or
     * `auto` (default): decided per answer by its shape (`data.data` + `data.metadata` is v2).
     */
    kv: z.union([z.literal(1), z.literal(2), z.literal('auto')]).default('auto'),
    /**
     * Upper bound for one HTTP call to Vault. latchkey's per-fetch timeout answers the
     * caller earlier; this bounds the socket behind it. Default 30s.
     */
    requestTimeout: duration.default(30_000),
  })
  .strict()
  .superRefine((o, ctx) => {
    if (o.auth?.method === 'token' && o.auth.token !== undefined && o.auth.tokenFile !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['auth'], message: 'set either token or tokenFile, not both' })
    }
    if (o.auth?.method === 'approle' && o.auth.secretId !== undefined && o.auth.secretIdFile !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['auth'], message: 'set either secretId or secretIdFile, not both' })
    }
  })

type VaultOptions = z.infer<typeof optionsSchema>

/** The node-vault calls this provider makes (a subset of its client). */
type VaultClient = VaultAuthClient & {
  namespace: string | undefined
  pathPrefix: string
  read(path: string, requestOptions?: Record<string, unknown>): Promise<unknown>
}

/**
 * Turn a ref into the API path below `/v1/`: `secret/data/app` stays as is (a leading
 * `/v1/` or `/` is dropped); each segment is percent-encoded so a ref cannot add a query
 * or climb out of its mount.
 */
function apiPath(ref: string, where: string): string {
  const trimmed = ref.replace(/^\/?(v1\/)?/, '')
  const segments = trimmed.split('/')
  if (trimmed === '' || segments.some((s) => s === '' || s === '.' || s === '..')) {
    throw new ProviderError('provider_config', `${where}: ref ${JSON.stringify(ref)} is not a Vault path like secret/data/app`, { retryable: false })
  }
  return segments.map((s) => encodeURIComponent(s)).join('/')
}

function isV2Shape(data: unknown): data is { data: Record<string, unknown> | null; metadata: { version?: unknown; destroyed?: unknown; deletion_time?: unknown } } {
  const d = data as { data?: unknown; metadata?: unknown } | null
  return typeof d === 'object' && d !== null && 'data' in d && typeof d.metadata === 'object' && d.metadata !== null
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/**
 * `vault`: HashiCorp Vault KV (v1 and v2) through node-vault. Ref = the API path below
 * `/v1/` (`secret/data/mlflow` for KV v2, `kv/mlflow` for KV v1); the secret's map is
 * returned as JSON text for `field` selection. The Vault token lives in memory only and
 * is renewed before it expires (see `VaultTokenManager`).
 */
export const vaultProvider: ProviderFactory<typeof optionsSchema> = {
  type: 'vault',
  optionsSchema,
  async create(options: VaultOptions, ctx): Promise<SecretProvider> {
    let where = `vault provider ${ctx.name}`
    const address = options.address ?? ctx.env.VAULT_ADDR
    if (!address) throw new ProviderError('provider_config', `${where}: no Vault address (set address or VAULT_ADDR)`, { retryable: false })
    let url: URL
    try {
      url = new URL(address)
      if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('scheme')
    } catch {
      throw new ProviderError('provider_config', `${where}: Vault address must be an http(s) URL`, { retryable: false })
    }
    // Every error names the address it tried (the origin: never userinfo a URL might carry).
    where = `${where} at ${url.origin}`
    if (url.protocol === 'http:' && !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) {
      ctx.logger.warn({ event: 'vault_plain_http', provider: ctx.name, host: url.host }, 'Vault address is plain http: tokens and secrets cross the network unencrypted')
    }
    const caFile = options.caFile ?? ctx.env.VAULT_CACERT
    // Node's `ca` replaces the system store, so the extra CA is added to it.
    const ca = caFile ? [...rootCertificates, readCaFile(path.resolve(caFile), where)] : ctx.ca ? [...rootCertificates, ctx.ca] : undefined
    const auth: VaultAuth = options.auth ?? { method: 'token' }
    const resolved: VaultAuth =
      auth.method === 'token'
        ? { ...auth, tokenFile: auth.tokenFile && path.resolve(auth.tokenFile) }
        : auth.method === 'approle'
          ? { ...auth, secretIdFile: auth.secretIdFile && path.resolve(auth.secretIdFile) }
          : { ...auth, jwtFile: path.resolve(auth.jwtFile) }

    const { default: createClient } = await import('node-vault')
    const vaultOptions: NodeVault.VaultOptions & { rpDefaults: Record<string, unknown> } = {
      endpoint: url.origin + url.pathname.replace(/\/+$/, ''),
      // node-vault falls back to process.env (VAULT_TOKEN, VAULT_NAMESPACE, VAULT_PREFIX,
      // VAULT_SKIP_VERIFY) where these are unset; latchkey sets each one from ctx.env or options.
      rpDefaults: { strictSSL: true },
      requestOptions: { strictSSL: true, timeout: options.requestTimeout, ...(ca ? { ca } : {}) },
      // node-vault's debug logger prints request bodies (an AppRole secret_id) when DEBUG is set.
      debug: () => undefined,
    }
    const client = createClient(vaultOptions) as unknown as VaultClient
    client.token = undefined
    client.namespace = options.namespace ?? ctx.env.VAULT_NAMESPACE
    client.pathPrefix = ''
    const tokens = new VaultTokenManager(client, resolved, ctx.env.VAULT_TOKEN, ctx.logger, where)

    // withRetryAfter: node-vault drops response headers; it keeps a 429's Retry-After for mapVaultError.
    const read = (p: string, token: string, signal: AbortSignal) => raced(() => withRetryAfter(() => client.read(p, { headers: { 'X-Vault-Token': token } })), signal)

    return {
      type: 'vault',
      async fetch(ref, opts) {
        const p = apiPath(ref, where)
        const what = `secret ${p}`
        if (opts.version !== undefined && (options.kv === 1 || !/^[1-9][0-9]*$/.test(opts.version))) {
          throw new ProviderError('provider_config', `${where}: version ${JSON.stringify(opts.version)} of ${p}: ${options.kv === 1 ? 'KV v1 has no versions' : 'a KV v2 version is a positive integer'}`, { retryable: false })
        }
        const full = opts.version === undefined ? p : `${p}?version=${opts.version}`
        let body: unknown
        let token: string
        try {
          token = await tokens.token(opts.signal)
          try {
            body = await read(full, token, opts.signal)
          } catch (err) {
            if (!isInvalidToken(err)) throw err
            // The token was revoked or expired under us: one fresh login, one retry.
            ctx.logger.debug({ event: 'vault_token_invalid', provider: ctx.name }, 'Vault says the token is invalid; logging in again')
            tokens.invalidate(token)
            token = await tokens.token(opts.signal)
            body = await read(full, token, opts.signal)
          }
        } catch (err) {
          throw notFoundDetail(err, p, where, options.kv) ?? mapVaultError(err, 'read', what, where)
        }
        const data = (body as { data?: unknown } | undefined)?.data
        let map: unknown = data
        let version: string | undefined
        if (options.kv === 2 || (options.kv === 'auto' && isV2Shape(data))) {
          if (!isV2Shape(data)) throw new ProviderError('invalid_secret', `${where}: ${what} is not a KV v2 answer (a KV v2 ref has /data/ after the mount, e.g. secret/data/app)`)
          map = data.data
          version = typeof data.metadata.version === 'number' ? String(data.metadata.version) : undefined
        } else if (opts.version !== undefined) {
          throw new ProviderError('provider_config', `${where}: version ${opts.version} requested, but ${p} is a KV v1 secret (no versions)`, { retryable: false })
        }
        if (!isMap(map)) throw new ProviderError('invalid_secret', `${where}: ${what} holds no key/value data`)
        return new SecretValue(JSON.stringify(map), version)
      },
      async check(signal): Promise<ProviderCheck> {
        try {
          const token = await tokens.token(signal)
          const res = await raced(() => client.tokenLookupSelf({ requestOptions: { headers: { 'X-Vault-Token': token } } }), signal)
          const d = (res as { data?: { display_name?: unknown; policies?: unknown; entity_id?: unknown; ttl?: unknown } } | undefined)?.data
          const name = typeof d?.display_name === 'string' ? d.display_name : 'token'
          const policies = Array.isArray(d?.policies) ? d.policies.filter((x): x is string => typeof x === 'string') : []
          const entity = typeof d?.entity_id === 'string' && d.entity_id !== '' ? ` entity ${d.entity_id}` : ''
          const ns = client.namespace ? ` in namespace ${client.namespace}` : ''
          return {
            reachable: true,
            authenticated: true,
            identity: `${name}${entity}${ns} (policies: ${policies.join(', ') || 'none'})`,
            detail: typeof d?.ttl === 'number' && d.ttl > 0 ? `token ttl ${d.ttl}s (${resolved.method} auth)` : `${resolved.method} auth`,
          }
        } catch (err) {
          const mapped = mapVaultError(err, 'lookup', 'token lookup', where)
          const reachable = mapped.code !== 'provider_unavailable' && mapped.code !== 'provider_timeout'
          return { reachable, authenticated: false, detail: mapped.message }
        }
      },
      async close() {
        tokens.close()
      },
    }
  },
}

/** KV v2 answers 404 with the version's metadata (and `data: null`) for a deleted or destroyed version. */
function notFoundDetail(err: unknown, p: string, where: string, kv: VaultOptions['kv']): ProviderError | undefined {
  if (vaultStatus(err) !== 404) return undefined
  const data = ((err as { response?: { body?: { data?: unknown } } }).response?.body?.data ?? null) as unknown
  if (isV2Shape(data) && data.data === null) {
    const m = data.metadata
    const v = typeof m.version === 'number' ? `version ${m.version} of ` : ''
    const state = m.destroyed === true ? 'destroyed' : typeof m.deletion_time === 'string' && m.deletion_time !== '' ? `deleted (soft delete at ${m.deletion_time})` : 'deleted'
    return new ProviderError('secret_not_found', `${where}: ${v}secret ${p} is ${state}`, { providerCode: m.destroyed === true ? '404 destroyed' : '404 deleted' })
  }
  const segments = p.split('/')
  if (kv !== 1 && segments[1] !== 'data') {
    return new ProviderError('secret_not_found', `${where}: secret ${p} does not exist (a KV v2 ref has /data/ after the mount, e.g. ${segments[0]}/data/${segments.slice(1).join('/')})`, {
      providerCode: '404',
    })
  }
  return undefined
}
