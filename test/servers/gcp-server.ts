import { randomBytes } from 'node:crypto'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createRequire } from 'node:module'
import path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { crc32c } from '../../src/providers/crc32c.ts'

/**
 * A GCP Secret Manager stand-in for tests: the real gRPC service
 * `google.cloud.secretmanager.v1.SecretManagerService/AccessSecretVersion`, loaded with
 * @grpc/proto-loader from the protos shipped in @google-cloud/secret-manager (plus
 * google-gax's for the includes) and served with @grpc/grpc-js; secrets in memory.
 *
 * Like the service: every call needs `authorization: Bearer <token>` metadata
 * (UNAUTHENTICATED otherwise); answers name the project NUMBER and the numeric version,
 * never "latest"; the payload carries a correct `dataCrc32c` (CRC-32C); "latest" is the
 * newest version even when it is disabled or destroyed (FAILED_PRECONDITION, no fallback);
 * secret ids are case-sensitive; a name in any other shape is INVALID_ARGUMENT.
 *
 * Tokens come from an STS token-exchange endpoint (RFC 8693, plain http on 127.0.0.1), the
 * one Workload Identity Federation uses: write `externalAccountJson()` to a file and point
 * the client's `keyFilename` (latchkey's `credentialsFile`) at it, and google-auth-library
 * exchanges the subject token there, as it would against `sts.googleapis.com`.
 */

export interface GcpServerOptions {
  /** Serve gRPC over TLS with this certificate (issued for 127.0.0.1). */
  tls?: { cert: string; key: string }
  projectId?: string
  projectNumber?: string
  /** Lifetime of issued access tokens, seconds. Default 3600. */
  tokenTtl?: number
}

type State = 'ENABLED' | 'DISABLED' | 'DESTROYED'

interface Version {
  data: Buffer
  state: State
}

type Fault = { n: number; code: grpc.status; message: string; secretId: string | undefined }

export interface GcpServer {
  /** `127.0.0.1`, for the client's `apiEndpoint`. */
  host: string
  port: number
  projectId: string
  projectNumber: string
  /** The STS endpoint (`token_url`). */
  tokenUrl: string
  /** A subject token the STS endpoint accepts (stands in for a Kubernetes service-account JWT). */
  subjectToken: string
  /** An `external_account` credentials file body; `subjectTokenFile` is where the subject token is written. */
  externalAccountJson(subjectTokenFile: string): string
  /** Add a version (the new latest); returns its number. */
  setSecret(secretId: string, value: string | Buffer): number
  /** Same as `setSecret` on an existing secret. */
  rotate(secretId: string, value: string | Buffer): number
  /** Disable (or destroy) a version; default the latest. */
  setState(secretId: string, state: State, version?: number): void
  /** Answer PERMISSION_DENIED for this secret. */
  deny(secretId: string, denied?: boolean): void
  /** The next `n` answers carry a wrong CRC (`'wrong'`) or none (`'missing'`). */
  corruptCrcNext(n: number, how?: 'wrong' | 'missing'): void
  /** The next `n` authorised calls (for `secretId` when given) fail with this gRPC code. */
  failNext(n: number, code: grpc.status, message?: string, secretId?: string): void
  /** The next `n` authorised calls (for `secretId` when given) fail with RESOURCE_EXHAUSTED. */
  throttleNext(n: number, secretId?: string): void
  /** Authorised AccessSecretVersion calls for one secret id. */
  reads(secretId: string): number
  /** Delay every answer by this many ms. */
  setLatency(ms: number): void
  /** Forget issued tokens: calls with them get UNAUTHENTICATED. */
  revokeTokens(): void
  /** The next `n` token exchanges answer this HTTP status. */
  failTokensNext(n: number, status: number): void
  /** `access` = AccessSecretVersion calls that passed the auth check; `unauthenticated`; `token` = STS exchanges. Default `access`. */
  requestCount(kind?: 'access' | 'unauthenticated' | 'token'): number
  close(): Promise<void>
}

const require = createRequire(import.meta.url)

/** The service definition, from the protos the client library ships. */
function loadService(): grpc.ServiceDefinition {
  // Neither package exports its package.json: find `build/` from each main file.
  const protosOf = (pkg: string) => {
    const main = require.resolve(pkg)
    return path.join(main.slice(0, main.lastIndexOf(`${path.sep}build${path.sep}`)), 'build', 'protos')
  }
  const smRoot = protosOf('@google-cloud/secret-manager')
  const gaxRoot = protosOf('google-gax')
  const def = protoLoader.loadSync('google/cloud/secretmanager/v1/service.proto', {
    includeDirs: [smRoot, gaxRoot],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  })
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    google: { cloud: { secretmanager: { v1: { SecretManagerService: { service: grpc.ServiceDefinition } } } } }
  }
  return pkg.google.cloud.secretmanager.v1.SecretManagerService.service
}

const SECRET_ID = /^[A-Za-z0-9_-]{1,255}$/
const NAME = /^projects\/([^/]+)(?:\/locations\/([^/]+))?\/secrets\/([^/]+)\/versions\/([^/]+)$/

export async function startGcpServer(opts: GcpServerOptions = {}): Promise<GcpServer> {
  const projectId = opts.projectId ?? 'latchkey-test'
  const projectNumber = opts.projectNumber ?? '123456789012'
  const tokenTtl = opts.tokenTtl ?? 3600
  const subjectToken = 'eyJhbGciOiJub25lIn0.' + Buffer.from(JSON.stringify({ sub: 'system:serviceaccount:data:pipeline', aud: 'latchkey-test' })).toString('base64url') + '.'
  const secrets = new Map<string, Version[]>()
  const denied = new Set<string>()
  const tokens = new Map<string, number>()
  const counts = { access: 0, unauthenticated: 0, token: 0 }
  let crcFault: { n: number; how: 'wrong' | 'missing' } = { n: 0, how: 'wrong' }
  let fault: Fault = { n: 0, code: grpc.status.UNAVAILABLE, message: '', secretId: undefined }
  let throttle: { n: number; secretId: string | undefined } = { n: 0, secretId: undefined }
  const readsById = new Map<string, number>()
  let latency = 0
  let tokenFail = { n: 0, status: 500 }
  const timers = new Set<NodeJS.Timeout>()

  const fail = (cb: grpc.sendUnaryData<unknown>, code: grpc.status, details: string) => cb({ code, details, metadata: new grpc.Metadata() } as grpc.ServiceError, null)

  const access = (call: grpc.ServerUnaryCall<{ name?: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
    const auth = call.metadata.get('authorization')[0]
    const m = typeof auth === 'string' ? /^Bearer (\S+)$/.exec(auth) : null
    const exp = m ? tokens.get(m[1]!) : undefined
    if (exp === undefined || exp < Date.now()) {
      counts.unauthenticated++
      return fail(
        cb,
        grpc.status.UNAUTHENTICATED,
        'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.',
      )
    }
    counts.access++
    const name = call.request.name ?? ''
    const parts = NAME.exec(name)
    if (!parts) return fail(cb, grpc.status.INVALID_ARGUMENT, `Invalid resource field value in the request.`)
    const [, project = '', location, secretId = '', version = ''] = parts
    if (!SECRET_ID.test(secretId) || !/^(latest|[1-9][0-9]*)$/.test(version)) return fail(cb, grpc.status.INVALID_ARGUMENT, 'Invalid resource field value in the request.')
    if (project !== projectId && project !== projectNumber) {
      return fail(cb, grpc.status.PERMISSION_DENIED, `Permission 'secretmanager.versions.access' denied for resource '${name}' (or it may not exist).`)
    }
    readsById.set(secretId, (readsById.get(secretId) ?? 0) + 1)
    const applies = (id: string | undefined) => id === undefined || id === secretId
    if (throttle.n > 0 && applies(throttle.secretId)) {
      throttle.n--
      return fail(cb, grpc.status.RESOURCE_EXHAUSTED, "Quota exceeded for quota metric 'Access requests' and limit 'Access requests per minute per project' of service 'secretmanager.googleapis.com'.")
    }
    if (fault.n > 0 && applies(fault.secretId)) {
      fault.n--
      return fail(cb, fault.code, fault.message || 'The service is currently unavailable.')
    }
    if (denied.has(secretId)) return fail(cb, grpc.status.PERMISSION_DENIED, `Permission 'secretmanager.versions.access' denied for resource '${name}' (or it may not exist).`)
    const loc = location ? `/locations/${location}` : ''
    const versions = secrets.get(secretId)
    if (!versions || versions.length === 0) return fail(cb, grpc.status.NOT_FOUND, `Secret [projects/${projectNumber}${loc}/secrets/${secretId}] not found or has no versions.`)
    const n = version === 'latest' ? versions.length : Number(version)
    const v = versions[n - 1]
    const canonical = `projects/${projectNumber}${loc}/secrets/${secretId}/versions/${n}`
    if (!v) return fail(cb, grpc.status.NOT_FOUND, `Secret Version [${canonical}] not found.`)
    if (v.state !== 'ENABLED') return fail(cb, grpc.status.FAILED_PRECONDITION, `Secret Version [${canonical}] is in ${v.state} state.`)
    let crc: string | null = String(crc32c(v.data))
    if (crcFault.n > 0) {
      crcFault.n--
      crc = crcFault.how === 'missing' ? null : String((crc32c(v.data) ^ 0x1) >>> 0)
    }
    cb(null, { name: canonical, payload: { data: v.data, ...(crc === null ? {} : { dataCrc32c: crc }) } })
  }

  const server = new grpc.Server()
  server.addService(loadService(), {
    AccessSecretVersion(call: grpc.ServerUnaryCall<{ name?: string }, unknown>, cb: grpc.sendUnaryData<unknown>) {
      if (latency <= 0) return access(call, cb)
      const t = setTimeout(() => {
        timers.delete(t)
        if (!call.cancelled) access(call, cb)
      }, latency)
      timers.add(t)
      call.on('cancelled', () => {
        clearTimeout(t)
        timers.delete(t)
      })
    },
  })
  const creds = opts.tls ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(opts.tls.cert), private_key: Buffer.from(opts.tls.key) }], false) : grpc.ServerCredentials.createInsecure()
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))))

  // STS token exchange (RFC 8693), as sts.googleapis.com/v1/token answers it.
  const sts = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      counts.token++
      const send = (status: number, body: unknown) => {
        const text = JSON.stringify(body)
        res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)) })
        res.end(text)
      }
      if (req.method !== 'POST' || new URL(req.url ?? '/', 'http://x').pathname !== '/v1/token') return send(404, { error: 'not_found' })
      if (tokenFail.n > 0) {
        tokenFail.n--
        return send(tokenFail.status, { error: tokenFail.status >= 500 ? 'server_error' : 'invalid_grant', error_description: 'token exchange failed' })
      }
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
      if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:token-exchange') return send(400, { error: 'unsupported_grant_type', error_description: 'grant_type' })
      if (form.get('subject_token') !== subjectToken) return send(400, { error: 'invalid_grant', error_description: 'The subject token is invalid.' })
      const token = 'ya29.' + randomBytes(24).toString('base64url')
      tokens.set(token, Date.now() + tokenTtl * 1000)
      send(200, { access_token: token, issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'Bearer', expires_in: tokenTtl })
    })
  })
  await new Promise<void>((r) => sts.listen(0, '127.0.0.1', r))
  const tokenUrl = `http://127.0.0.1:${(sts.address() as AddressInfo).port}/v1/token`

  const add = (secretId: string, value: string | Buffer): number => {
    if (!SECRET_ID.test(secretId)) throw new Error(`invalid secret id ${secretId}`)
    const list = secrets.get(secretId) ?? []
    secrets.set(secretId, list)
    list.push({ data: Buffer.isBuffer(value) ? value : Buffer.from(value, 'utf8'), state: 'ENABLED' })
    return list.length
  }

  return {
    host: '127.0.0.1',
    port,
    projectId,
    projectNumber,
    tokenUrl,
    subjectToken,
    externalAccountJson(subjectTokenFile) {
      return JSON.stringify({
        type: 'external_account',
        audience: `//iam.googleapis.com/projects/${projectNumber}/locations/global/workloadIdentityPools/latchkey/providers/test`,
        subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
        token_url: tokenUrl,
        credential_source: { file: subjectTokenFile },
      })
    },
    setSecret: add,
    rotate(secretId, value) {
      if (!secrets.has(secretId)) throw new Error(`no secret ${secretId}`)
      return add(secretId, value)
    },
    setState(secretId, state, version) {
      const list = secrets.get(secretId)
      const v = list?.[(version ?? list.length) - 1]
      if (!v) throw new Error(`no version ${version ?? 'latest'} of ${secretId}`)
      v.state = state
      if (state === 'DESTROYED') v.data = Buffer.alloc(0)
    },
    deny(secretId, isDenied = true) {
      if (isDenied) denied.add(secretId)
      else denied.delete(secretId)
    },
    corruptCrcNext(n, how = 'wrong') {
      crcFault = { n, how }
    },
    failNext(n, code, message, secretId) {
      fault = { n, code, message: message ?? '', secretId }
    },
    throttleNext(n, secretId) {
      throttle = { n, secretId }
    },
    reads(secretId) {
      return readsById.get(secretId) ?? 0
    },
    setLatency(ms) {
      latency = ms
    },
    revokeTokens() {
      tokens.clear()
    },
    failTokensNext(n, status) {
      tokenFail = { n, status }
    },
    requestCount(kind = 'access') {
      return counts[kind]
    },
    async close() {
      for (const t of timers) clearTimeout(t)
      timers.clear()
      sts.closeAllConnections?.()
      // Pending (slow) calls would keep a graceful shutdown waiting.
      server.forceShutdown()
      await new Promise<void>((r) => sts.close(() => r()))
    },
  }
}
