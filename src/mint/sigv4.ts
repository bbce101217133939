/**
 * AWS Signature Version 4 for requests that pass through latchkey: the client signs with dummy
 * keys (or not at all); this step drops its `Authorization`, `X-Amz-Date`,
 * `X-Amz-Security-Token` and `X-Amz-Content-Sha256` and signs the request again with the real
 * keys, using the signer the AWS SDK ships (`@smithy/signature-v4`).
 *
 * Bodies: S3 (and S3-compatible stores) accept `UNSIGNED-PAYLOAD` and verify a client's own
 * hex SHA-256 themselves, so those bodies stream untouched; a client's aws-chunked
 * `STREAMING-UNSIGNED-PAYLOAD-TRAILER` body carries no signatures and streams untouched too.
 * Signed chunks (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD...`) chain from the header signature, so
 * they cannot survive a new one: refused. Other services need the body's hash: it is buffered
 * up to a limit, else refused.
 */
import { createHash, createHmac, createSecretKey, type Hash, type Hmac, type KeyObject } from 'node:crypto'
import type { SignatureV4 as SmithySignatureV4 } from '@smithy/signature-v4'
import { errors, LatchkeyError, ProviderError } from '../errors.ts'
import { parseJsonObject, scalarField } from '../providers/secret-fields.ts'
import type { TokenMinter } from './minters.ts'

/** The keys a request is signed with. */
export interface AwsKeys {
  readonly accessKeyId: string
  readonly secretAccessKey: string
  readonly sessionToken?: string | undefined
}

export interface SigV4Options {
  /** Signing region; else derived from the host (`s3.eu-west-1.amazonaws.com`), else an error. */
  region?: string | undefined
  /** Signing service (`s3`, `execute-api`, ...); else derived from the host. */
  service?: string | undefined
  /** Hosts that are not `*.amazonaws.com` (MinIO, R2, a VPC endpoint): host (lowercase, with `:port` unless default) → region and service. */
  endpoints?: Readonly<Record<string, { region: string; service: string }>> | undefined
  /** Largest body buffered to hash it, for services that need a signed payload. Default 1 MiB. */
  maxBodyBytes?: number | undefined
}

/** How the request body takes part in the signature; decided from the request head before the body is read. */
export type BodyPlan =
  /** No body: the hash of the empty string. */
  | { readonly mode: 'empty' }
  /** `UNSIGNED-PAYLOAD` or the client's own hex hash / `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: the body streams unchanged. */
  | { readonly mode: 'stream'; readonly payloadHash: string }
  /** The body must be read (at most `limit` bytes) and passed to `sign` as `body`. */
  | { readonly mode: 'buffer'; readonly limit: number }

export interface SignInput {
  readonly method: string
  /** The URL the request goes to (its host is the one signed). */
  readonly url: URL
  /** The client's headers, lowercase names. */
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>
  readonly plan: BodyPlan
  /** The buffered body, for `plan.mode === 'buffer'`. */
  readonly body?: Uint8Array | undefined
  readonly keys: AwsKeys
  /** Signing time (tests); default now. */
  readonly now?: Date | undefined
}

/** The AWS SDK's signer, loaded with the first signature: a daemon without aws-sigv4 credentials never loads it. */
let smithy: Promise<typeof SmithySignatureV4> | undefined
function loadSmithy(): Promise<typeof SmithySignatureV4> {
  smithy ??= import('@smithy/signature-v4').then((sig) => sig.SignatureV4)
  return smithy
}

type SourceData = string | ArrayBuffer | ArrayBufferView

function bytes(data: SourceData, encoding?: BufferEncoding): Buffer {
  if (typeof data === 'string') return Buffer.from(data, encoding ?? 'utf8')
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  return Buffer.from(data)
}

/**
 * The signer's SHA-256 (its `sha256` option; what @smithy/hash-node does), with the HMAC key
 * made a KeyObject first: on Node 24 `createHmac` with a Buffer key costs about 20 µs (the
 * key's type check), with a KeyObject about 3, and each signature takes several HMACs.
 */
export class Sha256 {
  readonly #key: KeyObject | undefined
  #hash!: Hash | Hmac

  constructor(secret?: SourceData) {
    this.#key = secret === undefined ? undefined : createSecretKey(bytes(secret))
    this.reset()
  }

  update(data: SourceData, encoding?: BufferEncoding): void {
    this.#hash.update(bytes(data, encoding))
  }

  digest(): Promise<Uint8Array> {
    return Promise.resolve(this.#hash.digest())
  }

  reset(): void {
    this.#hash = this.#key === undefined ? createHash('sha256') : createHmac('sha256', this.#key)
  }
}

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
const HEX_SHA256 = /^[0-9a-f]{64}$/
/** Placeholders a client signed with dummy keys sends; ours replace them. */
const CLIENT_AUTH_HEADERS = ['authorization', 'x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256']
/** Headers signed besides `x-amz-*`: the ones that say what the body is. Everything else a hop may change is left unsigned. */
const SIGNED = new Set(['host', 'content-type', 'content-md5'])

/** A request the step refuses: 400 with a message that says what to change on the client. */
export function sigv4Refusal(message: string): LatchkeyError {
  return errors.sigv4_unsupported(message)
}

/**
 * Region and service for a host: the configured ones, a named endpoint, or the AWS host
 * forms (`s3.amazonaws.com`, `s3.<region>.amazonaws.com`, `s3-<region>...`,
 * `<bucket>.s3[.dualstack].<region>.amazonaws.com`, `<service>[.<region>].amazonaws.com[.cn]`).
 */
export function signingScope(host: string, opts: SigV4Options): { region: string; service: string } | undefined {
  const named = opts.endpoints?.[host.toLowerCase()]
  let region = opts.region ?? named?.region
  let service = opts.service ?? named?.service
  if (region === undefined || service === undefined) {
    const derived = scopeFromAwsHost(host.toLowerCase().replace(/:\d+$/, ''))
    region ??= derived?.region
    service ??= derived?.service
  }
  return region !== undefined && service !== undefined ? { region, service } : undefined
}

const REGION = /^[a-z]{2}(?:-gov|-iso[a-z]*)?-[a-z]+-\d$/

function scopeFromAwsHost(host: string): { region: string; service: string } | undefined {
  const m = /^(.+)\.amazonaws\.com(?:\.cn)?$/.exec(host)
  if (!m) return undefined
  const labels = (m[1] as string).split('.')
  // S3 from the right, so a bucket name holding an `s3` label does not count.
  for (let i = labels.length - 1; i >= 0; i--) {
    const l = labels[i] as string
    if (l === 's3' || l === 's3-external-1') return { service: 's3', region: labels.slice(i + 1).find((x) => REGION.test(x)) ?? 'us-east-1' }
    const dash = /^s3-(.+)$/.exec(l)
    if (dash && REGION.test(dash[1] as string)) return { service: 's3', region: dash[1] as string }
  }
  const last = labels.at(-1) as string
  if (labels.length >= 2 && REGION.test(last)) return { service: labels.at(-2) as string, region: last }
  return { service: last, region: 'us-east-1' }
}

/** Keys from a JSON secret: `accessKeyId`/`secretAccessKey`/`sessionToken`, the SDK's capitalised names, or the credentials-file names. */
export function parseAwsKeys(text: string): AwsKeys {
  const obj = parseJsonObject(text)
  const pick = (...names: string[]) => {
    for (const n of names) {
      const v = obj === undefined ? undefined : scalarField(obj, n)
      if (v !== undefined && v !== '') return v
    }
    return undefined
  }
  const accessKeyId = pick('accessKeyId', 'AccessKeyId', 'aws_access_key_id')
  const secretAccessKey = pick('secretAccessKey', 'SecretAccessKey', 'aws_secret_access_key')
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    throw new ProviderError('invalid_secret', 'aws-sigv4 needs a JSON secret with accessKeyId and secretAccessKey (and an optional sessionToken)', { retryable: false })
  }
  return { accessKeyId, secretAccessKey, sessionToken: pick('sessionToken', 'SessionToken', 'aws_session_token') }
}

/** Every form of the keys to scrub from logs (the access key id is not secret; patterns catch it anyway). */
export function awsKeyForms(keys: AwsKeys): string[] {
  return [keys.secretAccessKey, ...(keys.sessionToken ? [keys.sessionToken] : [])]
}

/** Scrub forms of a JSON key secret, for the credential's injector (`secretForms`): best effort, never throws. */
export function sigv4SecretForms(text: string): string[] {
  try {
    return awsKeyForms(parseAwsKeys(text))
  } catch {
    return []
  }
}

/** The sidecar's own AWS identity (IRSA, EKS Pod Identity, env, profile), refreshed by the SDK before it expires. */
export async function defaultAwsKeys(): Promise<() => Promise<AwsKeys & { expiration?: Date | undefined }>> {
  const { fromNodeProviderChain } = await import('@aws-sdk/credential-providers')
  return fromNodeProviderChain()
}

/**
 * The sidecar's own identity as a minter: each fetch asks the default chain for the current keys
 * and hands them to the cache as key JSON with their expiry, so the cache refreshes them ahead
 * of time and the scrubber learns each new secret key and session token as it arrives.
 */
export async function createAwsIdentityMinter(): Promise<TokenMinter> {
  const chain = await defaultAwsKeys()
  return {
    async mint() {
      let keys: AwsKeys & { expiration?: Date | undefined }
      try {
        keys = await chain()
      } catch (err) {
        const name = (err as { name?: unknown }).name
        // The chain's messages name the sources it tried, never a key.
        throw new ProviderError('provider_auth_failed', `aws-sigv4: the default AWS credential chain (IRSA web identity, EKS Pod Identity, environment, profile) gave no keys: ${(err as Error).message}`, { providerCode: typeof name === 'string' ? name : undefined, retryable: true })
      }
      const token = JSON.stringify({ accessKeyId: keys.accessKeyId, secretAccessKey: keys.secretAccessKey, ...(keys.sessionToken ? { sessionToken: keys.sessionToken } : {}) })
      return { token, lifetimeMs: keys.expiration ? keys.expiration.getTime() - Date.now() : undefined }
    },
  }
}

/** A signer for one credential: scopes and signers compiled once per host. */
export class SigV4Signer {
  readonly #opts: SigV4Options
  readonly #maxBody: number

  constructor(opts: SigV4Options) {
    this.#opts = opts
    this.#maxBody = opts.maxBodyBytes ?? 1024 * 1024
  }

  /**
   * Decide from the request head how its body is signed; throws a `bad_request` refusal for a
   * body latchkey cannot sign (signed aws-chunked, or too large to buffer for a service that
   * needs its hash), so the request is refused before any byte of the body is read.
   */
  plan(url: URL, headers: SignInput['headers']): BodyPlan {
    const scope = this.#scope(url)
    refusePresigned(url)
    const claimed = one(headers['x-amz-content-sha256'])
    const length = one(headers['content-length'])
    const chunked = one(headers['transfer-encoding']) !== undefined
    const hasBody = chunked || (length !== undefined && length !== '0')
    if (claimed?.startsWith('STREAMING-') && claimed !== 'STREAMING-UNSIGNED-PAYLOAD-TRAILER') {
      throw sigv4Refusal(`the client signed its body in aws-chunked ${claimed} mode, whose chunk signatures latchkey cannot re-sign; configure the client for unsigned payloads (boto3: Config(s3={'payload_signing_enabled': False}), AWS SDK JS: requestChecksumCalculation 'WHEN_REQUIRED')`)
    }
    if (scope.service === 's3') {
      if (!hasBody) return { mode: 'empty' }
      // S3 checks a hex hash or the trailer itself; anything else is sent unsigned.
      if (claimed !== undefined && (HEX_SHA256.test(claimed) || claimed === 'STREAMING-UNSIGNED-PAYLOAD-TRAILER')) return { mode: 'stream', payloadHash: claimed }
      return { mode: 'stream', payloadHash: 'UNSIGNED-PAYLOAD' }
    }
    if (!hasBody) return { mode: 'empty' }
    if (length !== undefined && Number(length) > this.#maxBody) {
      throw errors.request_too_large(`the request body (${length} bytes) is larger than the ${this.#maxBody} bytes latchkey buffers to sign a ${scope.service} request`)
    }
    return { mode: 'buffer', limit: this.#maxBody }
  }

  /** The headers to send: the client's, less its AWS auth placeholders, plus ours. */
  async sign(input: SignInput): Promise<Record<string, string>> {
    const SignatureV4 = await loadSmithy()
    const scope = this.#scope(input.url)
    const headers: Record<string, string> = {}
    for (const [k, v] of Object.entries(input.headers)) {
      if (v === undefined || CLIENT_AUTH_HEADERS.includes(k)) continue
      headers[k] = typeof v === 'string' ? v : v.join(',')
    }
    headers.host = input.url.host
    let payloadHash: string
    if (input.plan.mode === 'empty') payloadHash = EMPTY_SHA256
    else if (input.plan.mode === 'stream') payloadHash = input.plan.payloadHash
    else {
      if (input.body === undefined) throw new Error('sign: the plan asked for the buffered body')
      if (input.body.byteLength > input.plan.limit) throw errors.request_too_large(`the request body is larger than the ${input.plan.limit} bytes latchkey buffers to sign a ${scope.service} request`)
      payloadHash = createHash('sha256').update(input.body).digest('hex')
    }
    // S3 wants the payload hash as a header; other services accept it and it is signed like any x-amz-*.
    headers['x-amz-content-sha256'] = payloadHash
    const signer = new SignatureV4({
      credentials: { accessKeyId: input.keys.accessKeyId, secretAccessKey: input.keys.secretAccessKey, ...(input.keys.sessionToken ? { sessionToken: input.keys.sessionToken } : {}) },
      region: scope.region,
      service: scope.service,
      sha256: Sha256,
      // S3 signs the path as sent (encoded once); every other service encodes it again.
      uriEscapePath: scope.service !== 's3',
      applyChecksum: false,
    })
    const query: Record<string, string | string[]> = {}
    for (const [k, v] of input.url.searchParams) {
      const prev = query[k]
      query[k] = prev === undefined ? v : [prev, v].flat()
    }
    refusePresigned(input.url)
    const unsignable = new Set(Object.keys(headers).filter((k) => !SIGNED.has(k) && !k.startsWith('x-amz-')))
    const signed = await signer.sign(
      { method: input.method, protocol: input.url.protocol, hostname: input.url.hostname, ...(input.url.port ? { port: Number(input.url.port) } : {}), path: scope.service === 's3' ? s3CanonicalPath(input.url.pathname) : input.url.pathname, query, headers, body: undefined },
      { signingDate: input.now ?? new Date(), unsignableHeaders: unsignable },
    )
    const out: Record<string, string> = {}
    for (const [k, v] of Object.entries(signed.headers)) out[k.toLowerCase()] = String(v)
    return out
  }

  #scope(url: URL): { region: string; service: string } {
    const scope = signingScope(url.host, this.#opts)
    if (!scope) throw new LatchkeyError('provider_config', `aws-sigv4: cannot tell the region and service of ${url.host}; set region and service, or name the host under endpoints`)
    return scope
  }
}

/**
 * S3 signs each path segment decoded and encoded once (RFC 3986): a client may send `+` or
 * `!` raw where the canonical form escapes them. The path sent stays the client's.
 */
function s3CanonicalPath(path: string): string {
  return path
    .split('/')
    .map((seg) => {
      let decoded: string
      try {
        decoded = decodeURIComponent(seg)
      } catch {
        return seg
      }
      return encodeURIComponent(decoded).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())
    })
    .join('/')
}

/** A presigned URL carries its own signature, made with the client's (dummy) keys: it cannot be re-signed into a header one without changing what it means. */
function refusePresigned(url: URL): void {
  for (const k of url.searchParams.keys()) {
    if (k.toLowerCase() === 'x-amz-signature') throw sigv4Refusal('the request carries a presigned-URL signature (X-Amz-Signature); latchkey signs in the Authorization header only: send the request without presigning')
  }
}

function one(v: string | readonly string[] | undefined): string | undefined {
  return typeof v === 'string' ? v : v?.[0]
}
