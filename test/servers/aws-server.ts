import { Sha256 } from '@aws-crypto/sha256-js'
import { SignatureV4 } from '@smithy/signature-v4'
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { ACCOUNT, handleSts, type StsOptions, type StsSession } from './aws-sts.ts'

/**
 * An AWS Secrets Manager stand-in for tests, speaking the real wire protocol
 * (awsJson1_1): `POST /` with `content-type: application/x-amz-json-1.1` and
 * `x-amz-target: secretsmanager.GetSecretValue`; SigV4 verified by recomputing the
 * signature with `@smithy/signature-v4` over exactly the signed headers and body bytes
 * at the request's `x-amz-date`; `ListSecrets` (metadata only, as doctor's probe uses it); STS on the
 * same listener (see `aws-sts.ts`); AWS's error shapes (`{"__type", "Message"}`, HTTP
 * 400 / 500, `x-amzn-ErrorType`, `x-amzn-RequestId`) and an accurate `Date` header.
 */

export interface AwsCredentials {
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string
}

export interface AwsServerOptions {
  region?: string
  /** Keys the server accepts. Default: one static key pair (see `credentials`). */
  credentials?: AwsCredentials[]
  /** Allowed clock skew between `x-amz-date` and the server clock. Default 5 minutes. */
  maxSkewMs?: number
  /**
   * Roles that STS `AssumeRole` (awsQuery, same listener) hands session credentials
   * for: role ARN → required ExternalId (or none). Session keys are then accepted.
   */
  roles?: Record<string, { externalId?: string; durationSeconds?: number }>
  /** Roles that STS `AssumeRoleWithWebIdentity` (unsigned, as IRSA calls it) hands session credentials for: role ARN → the trusted token. */
  webIdentityRoles?: Record<string, { token: string }>
}

export type PathFilter = string | RegExp

interface StoredVersion {
  versionId: string
  stages: string[]
  string: string | undefined
  binary: Buffer | undefined
  created: number
}

interface StoredSecret {
  name: string
  arn: string
  versions: StoredVersion[]
  deleted: boolean
  /** Access key ids refused (AccessDeniedException) for this secret. */
  denyKeys: Set<string>
  kmsFailure: boolean
}

interface Fault {
  remaining: number
  status: number
  type: string
  filter: PathFilter | undefined
  retryAfter: string | undefined
}

export interface AwsServer {
  url: string
  port: number
  region: string
  /** The first configured key pair. */
  credentials: AwsCredentials
  /** Create or add a version (moves AWSCURRENT to it, AWSPREVIOUS to the old one). Returns the VersionId. */
  setSecret(name: string, value: string | Buffer): string
  rotate(name: string, value: string | Buffer): string
  /** Mark for deletion: reads answer InvalidRequestException. */
  markDeleted(name: string): void
  /** Reads by this access key id answer AccessDeniedException. */
  denyAccess(name: string, accessKeyId: string): void
  /** Reads answer DecryptionFailure (KMS key disabled or not permitted). */
  failDecryption(name: string): void
  /** Stop accepting a key: requests signed with it answer UnrecognizedClientException. */
  revokeKey(accessKeyId: string): void
  arnOf(name: string): string
  setLatency(ms: number, filter?: PathFilter): void
  /** Answer the next `n` matching requests (filter on the secret id) with an error. */
  failNext(n: number, status: number, filter?: PathFilter, type?: string): void
  /** Answer the next `n` with ThrottlingException (400), optionally with `retry-after` seconds. */
  throttleNext(n: number, filter?: PathFilter, retryAfterSeconds?: number): void
  /** Drop pending failures and latency: the server is healthy again. */
  recover(): void
  /** Session credentials issued by AssumeRole and AssumeRoleWithWebIdentity, newest last. */
  readonly sessions: ReadonlyArray<StsSession>
  /** Reads of secret values: ListSecrets by this access key id answer AccessDeniedException (least privilege). */
  denyList(accessKeyId: string): void
  /**
   * Requests served; with a filter, those whose SecretId (for STS `<Action> <RoleArn>`, or
   * `GetCallerIdentity`; for ListSecrets `ListSecrets`) contains / matches it.
   */
  requestCount(filter?: PathFilter): number
  readonly log: ReadonlyArray<{ target: string; secretId: string; accessKeyId: string | undefined; status: number }>
  close(): Promise<void>
}

const RAND6 = () => randomUUID().replace(/-/g, '').slice(0, 6)

function matches(filter: PathFilter | undefined, s: string): boolean {
  if (filter === undefined) return true
  return typeof filter === 'string' ? s.includes(filter) : filter.test(s)
}

const ERROR_MESSAGES: Record<string, string> = {
  InternalServiceError: 'An error occurred on the server side.',
  ThrottlingException: 'Rate exceeded',
  ServiceUnavailable: 'Service Unavailable',
}

/** `20240102T030405Z` → Date, or undefined. */
function parseAmzDate(s: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s)
  if (!m) return undefined
  const [, y, mo, d, h, mi, se] = m
  return new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(se)))
}

export async function startAwsServer(options: AwsServerOptions = {}): Promise<AwsServer> {
  const region = options.region ?? 'eu-west-1'
  const keys = options.credentials ?? [{ accessKeyId: 'AKIATESTLOCAL0000001', secretAccessKey: 'local-secret-key-for-sigv4-tests-000000' }]
  const byKey = new Map<string, AwsCredentials & { expiresAt?: number }>(keys.map((k) => [k.accessKeyId, k]))
  const sessions: StsSession[] = []
  const listDenied = new Set<string>()
  const maxSkew = options.maxSkewMs ?? 5 * 60_000
  const secrets = new Map<string, StoredSecret>()
  const faults: Fault[] = []
  const latencies: Array<{ ms: number; filter: PathFilter | undefined }> = []
  const log: Array<{ target: string; secretId: string; accessKeyId: string | undefined; status: number }> = []

  function send(res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}) {
    const text = JSON.stringify(body)
    res.writeHead(status, {
      'content-type': 'application/x-amz-json-1.1',
      'content-length': String(Buffer.byteLength(text)),
      'x-amzn-requestid': randomUUID(),
      date: new Date().toUTCString(),
      ...extra,
    })
    res.end(text)
  }

  function fail(res: ServerResponse, status: number, type: string, message: string, extra: Record<string, string> = {}) {
    // Real answers name the type (sometimes namespaced, `com.amazonaws...#Name`) in the body and a header.
    send(res, status, { __type: type, Message: message }, { 'x-amzn-errortype': `${type}:http://internal.amazon.com/coral/com.amazon.coral.service/`, ...extra })
  }

  type Fail = (res: ServerResponse, status: number, type: string, message: string) => void

  /** Verify SigV4 for `service`; answers the error itself and returns undefined when the request is not authentic. */
  async function authenticate(req: IncomingMessage, res: ServerResponse, body: Buffer, service: 'secretsmanager' | 'sts', fail: Fail): Promise<string | undefined> {
    const auth = req.headers.authorization
    if (!auth) {
      fail(res, 400, 'MissingAuthenticationTokenException', 'Missing Authentication Token')
      return undefined
    }
    const m = /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(auth)
    if (!m) {
      fail(res, 400, 'IncompleteSignatureException', 'Authorization header requires \'Credential\', \'Signature\', \'SignedHeaders\' parameters.')
      return undefined
    }
    const [, akid = '', shortDate, scopeRegion, scopeService, signedList = '', signature = ''] = m
    const key = byKey.get(akid)
    if (!key || (key.expiresAt !== undefined && key.expiresAt <= Date.now())) {
      fail(res, 400, 'UnrecognizedClientException', 'The security token included in the request is invalid.')
      return undefined
    }
    const amzDate = String(req.headers['x-amz-date'] ?? '')
    const date = parseAmzDate(amzDate)
    const signed = signedList.split(';')
    if (!date || !signed.includes('x-amz-date') || !signed.includes('host') || amzDate.slice(0, 8) !== shortDate) {
      fail(res, 400, 'IncompleteSignatureException', 'Date must be in ISO-8601 \'basic format\' and signed; the credential scope date must match it.')
      return undefined
    }
    if (Math.abs(date.getTime() - Date.now()) > maxSkew) {
      fail(res, 400, 'InvalidSignatureException', `Signature expired: ${amzDate} is now earlier than the allowed window.`)
      return undefined
    }
    if (scopeRegion !== region || scopeService !== service) {
      fail(res, 400, 'InvalidSignatureException', `Credential should be scoped to a valid region and service (${region}/${service}).`)
      return undefined
    }
    const token = req.headers['x-amz-security-token']
    if (key.sessionToken !== undefined && (token !== key.sessionToken || !signed.includes('x-amz-security-token'))) {
      fail(res, 400, 'UnrecognizedClientException', 'The security token included in the request is invalid.')
      return undefined
    }
    // A signed payload hash must be the body's: otherwise the signer would trust the header instead of the bytes.
    const claimed = req.headers['x-amz-content-sha256']
    if (claimed !== undefined && claimed !== createHash('sha256').update(body).digest('hex')) {
      fail(res, 400, 'InvalidSignatureException', 'The provided x-amz-content-sha256 header does not match what was computed.')
      return undefined
    }
    const headers: Record<string, string> = {}
    for (const name of signed) {
      const v = req.headers[name]
      if (v === undefined) {
        fail(res, 400, 'InvalidSignatureException', `Signed header ${name} is missing.`)
        return undefined
      }
      if (name !== 'x-amz-date') headers[name] = Array.isArray(v) ? v.join(',') : v
    }
    const url = new URL(req.url ?? '/', 'http://local')
    const signer = new SignatureV4({
      credentials: { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey, ...(key.sessionToken ? { sessionToken: key.sessionToken } : {}) },
      region,
      service,
      sha256: Sha256,
      applyChecksum: false,
    })
    const query: Record<string, string> = {}
    url.searchParams.forEach((v, k) => (query[k] = v))
    const out = await signer.sign(
      { method: req.method ?? 'POST', protocol: 'http:', hostname: url.hostname, path: url.pathname, query, headers, body: new Uint8Array(body) },
      { signingDate: date, signableHeaders: new Set(signed) },
    )
    const expected = /Signature=([0-9a-f]{64})$/.exec(String(out.headers.authorization))?.[1] ?? ''
    const expectedList = /SignedHeaders=([^,]+),/.exec(String(out.headers.authorization))?.[1]
    if (expectedList !== signedList || !timingSafeEqual(Buffer.from(expected), Buffer.from(signature))) {
      fail(
        res,
        400,
        'InvalidSignatureException',
        'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
      )
      return undefined
    }
    return akid
  }

  async function handle(req: IncomingMessage, res: ServerResponse, body: Buffer) {
    const target = String(req.headers['x-amz-target'] ?? '')
    const entry = { target, secretId: '', accessKeyId: undefined as string | undefined, status: 0 }
    log.push(entry)
    const origWriteHead = res.writeHead.bind(res)
    res.writeHead = ((status: number, ...rest: unknown[]) => {
      entry.status = status
      return (origWriteHead as (s: number, ...r: unknown[]) => ServerResponse)(status, ...rest)
    }) as typeof res.writeHead

    if (req.method !== 'POST' || (req.url ?? '/') !== '/') return fail(res, 404, 'UnknownOperationException', 'Unknown operation')
    const ctype = String(req.headers['content-type'] ?? '').split(';')[0]?.trim()
    if (ctype === 'application/x-www-form-urlencoded') return handleSts(stsDeps, req, res, body, entry)
    if (ctype !== 'application/x-amz-json-1.1') {
      // A future SDK speaking another protocol (CBOR) must fail loudly here.
      return fail(res, 400, 'UnsupportedMediaTypeException', `Unsupported content type ${ctype || '(none)'}`)
    }
    try {
      const peek = JSON.parse(body.toString('utf8')) as { SecretId?: unknown }
      if (typeof peek.SecretId === 'string') entry.secretId = peek.SecretId
    } catch {
      // reported after authentication, as AWS does
    }
    const akid = await authenticate(req, res, body, 'secretsmanager', fail)
    if (!akid) return
    entry.accessKeyId = akid
    let input: Record<string, unknown>
    try {
      input = JSON.parse(body.toString('utf8')) as Record<string, unknown>
    } catch {
      return fail(res, 400, 'SerializationException', 'Could not parse request body into json.')
    }
    entry.secretId = typeof input.SecretId === 'string' ? input.SecretId : ''

    const latency = latencies.filter((l) => matches(l.filter, entry.secretId)).reduce((a, l) => Math.max(a, l.ms), 0)
    if (latency > 0) await new Promise((r) => setTimeout(r, latency))
    const fault = faults.find((f) => f.remaining > 0 && matches(f.filter, entry.secretId))
    if (fault) {
      fault.remaining--
      return fail(res, fault.status, fault.type, ERROR_MESSAGES[fault.type] ?? 'Injected failure', fault.retryAfter ? { 'retry-after': fault.retryAfter } : {})
    }

    if (target === 'secretsmanager.ListSecrets') return listSecrets(res, input, akid, entry)
    if (target !== 'secretsmanager.GetSecretValue') return fail(res, 400, 'UnknownOperationException', `Operation ${target} is not supported by this test server`)
    const id = input.SecretId
    if (typeof id !== 'string' || id === '' || id.length > 2048) return fail(res, 400, 'InvalidParameterException', 'Invalid SecretId.')
    const secret = secrets.get(id) ?? [...secrets.values()].find((s) => s.arn === id || (id.startsWith('arn:') && s.arn.startsWith(id + '-')))
    if (!secret) return fail(res, 400, 'ResourceNotFoundException', "Secrets Manager can't find the specified secret.")
    if (secret.denyKeys.has(akid)) {
      return fail(res, 400, 'AccessDeniedException', `User: arn:aws:iam::${ACCOUNT}:user/test is not authorized to perform: secretsmanager:GetSecretValue on resource: ${id} because no identity-based policy allows the secretsmanager:GetSecretValue action`)
    }
    if (secret.deleted) {
      return fail(res, 400, 'InvalidRequestException', "You can't perform this operation on the secret because it was marked for deletion.")
    }
    if (secret.kmsFailure) return fail(res, 400, 'DecryptionFailure', 'Secrets Manager can\'t decrypt the protected secret text using the provided KMS key.')
    const versionId = input.VersionId
    const stage = input.VersionStage
    if (versionId !== undefined && (typeof versionId !== 'string' || versionId.length < 32 || versionId.length > 64)) {
      return fail(res, 400, 'InvalidParameterException', 'Invalid VersionId.')
    }
    let v: StoredVersion | undefined
    if (typeof versionId === 'string') {
      v = secret.versions.find((x) => x.versionId === versionId)
      if (v && typeof stage === 'string' && !v.stages.includes(stage)) v = undefined
    } else {
      const want = typeof stage === 'string' ? stage : 'AWSCURRENT'
      v = secret.versions.find((x) => x.stages.includes(want))
    }
    if (!v) return fail(res, 400, 'ResourceNotFoundException', "Secrets Manager can't find the specified secret value for staging label: " + String(stage ?? 'AWSCURRENT'))
    return send(res, 200, {
      ARN: secret.arn,
      Name: secret.name,
      VersionId: v.versionId,
      ...(v.string !== undefined ? { SecretString: v.string } : { SecretBinary: v.binary?.toString('base64') }),
      VersionStages: v.stages,
      CreatedDate: v.created / 1000,
    })
  }

  const stsDeps = {
    options: options satisfies StsOptions,
    authenticate,
    accept: (creds: AwsCredentials & { expiresAt: number }) => void byKey.set(creds.accessKeyId, creds),
    sessions,
  }

  /** ListSecrets: one page of metadata (never a value), newest first, as the real API pages it. */
  function listSecrets(res: ServerResponse, input: Record<string, unknown>, akid: string, entry: { secretId: string }) {
    entry.secretId = 'ListSecrets'
    if (listDenied.has(akid)) {
      return fail(res, 400, 'AccessDeniedException', `User: arn:aws:iam::${ACCOUNT}:user/test is not authorized to perform: secretsmanager:ListSecrets because no identity-based policy allows the secretsmanager:ListSecrets action`)
    }
    const max = input.MaxResults === undefined ? 100 : Number(input.MaxResults)
    if (!Number.isInteger(max) || max < 1 || max > 100) return fail(res, 400, 'InvalidParameterException', 'MaxResults must be between 1 and 100.')
    const all = [...secrets.values()].filter((x) => !x.deleted).reverse()
    const page = all.slice(0, max).map((x) => ({
      ARN: x.arn,
      Name: x.name,
      LastChangedDate: (x.versions.at(-1)?.created ?? Date.now()) / 1000,
      SecretVersionsToStages: Object.fromEntries(x.versions.filter((v) => v.stages.length > 0).map((v) => [v.versionId, v.stages])),
      CreatedDate: (x.versions[0]?.created ?? Date.now()) / 1000,
    }))
    return send(res, 200, { SecretList: page, ...(all.length > max ? { NextToken: Buffer.from(String(max)).toString('base64') } : {}) })
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks)).catch(() => {
        if (!res.headersSent) fail(res, 500, 'InternalServiceError', 'An error occurred on the server side.')
        else res.destroy()
      })
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port

  function put(name: string, value: string | Buffer): string {
    let s = secrets.get(name)
    if (!s) {
      s = { name, arn: `arn:aws:secretsmanager:${region}:${ACCOUNT}:secret:${name}-${RAND6()}`, versions: [], deleted: false, denyKeys: new Set(), kmsFailure: false }
      secrets.set(name, s)
    }
    for (const old of s.versions) old.stages = old.stages.filter((st) => st !== 'AWSPREVIOUS')
    for (const old of s.versions) if (old.stages.includes('AWSCURRENT')) old.stages = old.stages.map((st) => (st === 'AWSCURRENT' ? 'AWSPREVIOUS' : st))
    const versionId = randomUUID()
    s.versions.push({ versionId, stages: ['AWSCURRENT'], string: typeof value === 'string' ? value : undefined, binary: Buffer.isBuffer(value) ? Buffer.from(value) : undefined, created: Date.now() })
    return versionId
  }

  function get(name: string): StoredSecret {
    const s = secrets.get(name)
    if (!s) throw new Error(`no secret ${name}`)
    return s
  }

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    region,
    credentials: keys[0]!,
    sessions,
    setSecret: put,
    rotate: put,
    markDeleted: (name) => void (get(name).deleted = true),
    denyAccess: (name, akid) => void get(name).denyKeys.add(akid),
    failDecryption: (name) => void (get(name).kmsFailure = true),
    revokeKey: (akid) => void byKey.delete(akid),
    denyList: (akid) => void listDenied.add(akid),
    arnOf: (name) => get(name).arn,
    setLatency(ms, filter) {
      latencies.length = 0
      if (ms > 0) latencies.push({ ms, filter })
    },
    failNext(n, status, filter, type) {
      faults.push({ remaining: n, status, filter, type: type ?? (status >= 500 ? 'InternalServiceError' : 'InvalidRequestException'), retryAfter: undefined })
    },
    throttleNext(n, filter, retryAfterSeconds) {
      faults.push({ remaining: n, status: 400, filter, type: 'ThrottlingException', retryAfter: retryAfterSeconds === undefined ? undefined : String(retryAfterSeconds) })
    },
    recover() {
      faults.length = 0
      latencies.length = 0
    },
    requestCount(filter) {
      return log.filter((l) => matches(filter, l.secretId)).length
    },
    log,
    close() {
      server.closeAllConnections()
      return new Promise((r) => server.close(() => r()))
    },
  }
}
