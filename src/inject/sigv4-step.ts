import type { Dispatcher } from 'undici'
import type { Resolved } from '../cache/secret-cache.ts'
import { errors, LatchkeyError } from '../errors.ts'
import { parseAwsKeys, sigv4SecretForms, type AwsKeys, type BodyPlan, type SigV4Signer } from '../mint/sigv4.ts'
import type { SecretValue } from '../providers/secret-value.ts'
import { failUnsent, type ExchangeOptions } from '../observe/request-record.ts'
import type { CompiledInjector } from './render.ts'
import { headerPairs } from '../http/header-list.ts'
import type { BoundExchange } from './inject-step.ts'


/**
 * Where the inject step puts the resolved keys of an `aws-sigv4` credential on each attempt's
 * dispatch options, instead of a header; a symbol, so nothing that copies or logs the options by
 * name carries them on.
 */
export const AWS_KEYS = Symbol('latchkey.awsKeys')

type SigV4Options = Dispatcher.DispatchOptions & ExchangeOptions & { [AWS_KEYS]?: Resolved }

/** Connection-level fields: never signed, never forwarded by this step. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect'])

/**
 * The injector of an `aws-sigv4` credential: the cached value is the key JSON itself (checked
 * when fetched, so a malformed secret is `invalid_secret` once, not on every request); it is
 * never rendered into a header. The sigv4 step signs with it.
 */
export class SigV4Injector implements CompiledInjector {
  readonly headerName = 'authorization'
  readonly overwrite: boolean
  readonly #credential: string

  constructor(credential: string, overwrite: boolean) {
    this.#credential = credential
    this.overwrite = overwrite
  }

  render(secretText: string): string {
    try {
      parseAwsKeys(secretText)
    } catch (err) {
      throw new LatchkeyError('invalid_secret', `credential ${this.#credential}: ${(err as Error).message}`)
    }
    return secretText
  }

  secretForms(secretText: string): string[] {
    return sigv4SecretForms(secretText)
  }
}

/** Parsed keys per fetched value: one JSON parse per value, not per request. */
const parsedKeys = new WeakMap<SecretValue, AwsKeys>()

function keysOf(resolved: Resolved): AwsKeys {
  let keys = parsedKeys.get(resolved.secret)
  if (keys === undefined) {
    keys = parseAwsKeys(resolved.headerValue)
    parsedKeys.set(resolved.secret, keys)
  }
  return keys
}

/**
 * The SigV4 step: after the inject step, on every attempt (so a replay after a 403 is signed
 * again with the refetched keys). It drops the client's placeholder auth headers and signs the
 * final method, URL and headers; it is the last step that touches `host`, `content-type`,
 * `content-md5` and `x-amz-*`, so what is sent is what was signed. The body streams through
 * unless the service needs its hash, then it is read up to `maxBodyBytes`. A request it cannot
 * sign is refused before any byte of the body is read here.
 */
export function sigv4Step(): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) =>
    function sigv4(opts, handler) {
      const o = opts as SigV4Options
      const signer = (o.exchange as BoundExchange | undefined)?.binding?.sigv4
      if (signer === undefined) return dispatch(opts, handler)
      const resolved = o[AWS_KEYS]
      // No keys: the inject step kept the client's own signature (overwrite: false).
      if (resolved === undefined) return dispatch(opts, handler)
      const url = new URL(o.path, o.origin)
      const headers = signingHeaders(o.headers)
      const planHeaders = o.body !== null && o.body !== undefined && headers['content-length'] === undefined ? { ...headers, 'transfer-encoding': 'chunked' } : headers
      // Throws a registry error (sigv4_unsupported, request_too_large): the caller answers it.
      const plan = signer.plan(url, planHeaders)
      void signAndSend(signer, dispatch, o, handler, url, headers, plan, keysOf(resolved))
      return true
    }
}

async function signAndSend(signer: SigV4Signer, dispatch: Dispatcher.Dispatch, opts: SigV4Options, handler: Dispatcher.DispatchHandler, url: URL, headers: Record<string, string | string[]>, plan: BodyPlan, keys: AwsKeys): Promise<void> {
  let body = opts.body
  let signed: Record<string, string>
  try {
    if (plan.mode === 'buffer') body = await readBody(body, plan.limit, url.host)
    signed = await signer.sign({ method: opts.method, url, headers, plan, body: plan.mode === 'buffer' ? (body as Buffer) : undefined, keys })
  } catch (err) {
    return failUnsent(handler, err instanceof Error ? err : new Error(String(err)))
  }
  const flat: string[] = []
  for (const [k, v] of Object.entries(signed)) flat.push(k, v)
  const { [AWS_KEYS]: _keys, ...rest } = opts
  try {
    dispatch({ ...rest, headers: flat, body }, handler)
  } catch (err) {
    failUnsent(handler, err as Error)
  }
}

/** The client's headers by lowercase name, repeated fields kept as a list, connection fields dropped. */
function signingHeaders(raw: Dispatcher.DispatchOptions['headers']): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of headerPairs(raw)) {
    const k = name.toLowerCase()
    if (HOP_BY_HOP.has(k)) continue
    const prev = out[k]
    out[k] = prev === undefined ? value : [prev, value].flat()
  }
  return out
}

/** A body the signer must hash, read into memory: at most `limit` bytes, else refused. */
async function readBody(body: Dispatcher.DispatchOptions['body'], limit: number, host: string): Promise<Buffer> {
  if (body === null || body === undefined) return Buffer.alloc(0)
  if (typeof body === 'string') return Buffer.from(body)
  if (body instanceof Uint8Array) return Buffer.from(body.buffer, body.byteOffset, body.byteLength)
  const iterable = body as unknown as AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>
  if (typeof (iterable as AsyncIterable<unknown>)[Symbol.asyncIterator] !== 'function' && typeof (iterable as Iterable<unknown>)[Symbol.iterator] !== 'function') {
    throw errors.sigv4_unsupported(`aws-sigv4: the request body to ${host} is of a kind latchkey cannot read to hash; send a string, bytes or a stream`)
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const c of iterable) {
    const b = typeof c === 'string' ? Buffer.from(c) : Buffer.from(c.buffer, c.byteOffset, c.byteLength)
    size += b.byteLength
    if (size > limit) throw errors.request_too_large(`the request body to ${host} is larger than the ${limit} bytes latchkey buffers to sign it`)
    chunks.push(b)
  }
  return Buffer.concat(chunks, size)
}
