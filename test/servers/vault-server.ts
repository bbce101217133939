import { randomBytes, randomUUID } from 'node:crypto'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'

/**
 * A HashiCorp Vault stand-in for tests: the real HTTP API shapes (checked against
 * Vault's docs and `../shared/reference/provider-protocols.md`), secrets in memory.
 *
 * Speaks: KV v2 (`GET /v1/<mount>/data/<path>[?version=N]`, versions, soft delete,
 * destroy) and KV v1 (`GET /v1/<mount>/<path>`) on any mount name; token auth
 * (`X-Vault-Token`), AppRole and Kubernetes login, `renew-self`, `lookup-self`;
 * namespaces (`X-Vault-Namespace` scopes mounts, secrets and tokens); Vault's error
 * shapes (`{"errors": [...]}`) for 400/403/404/429/503.
 */

export interface VaultTokenSpec {
  /** Token TTL in seconds; 0 = never expires (like a root token). */
  ttl?: number
  /** Explicit max TTL in seconds that renewals cannot extend past (0 = none). */
  maxTtl?: number
  renewable?: boolean
  policies?: string[]
  /**
   * API paths (after `/v1/`, e.g. `secret/data/app`) this token may read; a trailing
   * `*` is a prefix glob as in Vault policies. Undefined = everything (root).
   */
  allow?: string[]
  namespace?: string
  displayName?: string
}

export interface VaultServerOptions {
  tls?: { cert: string; key: string }
  /** Mount name → KV version. Default `{ secret: 2, kv: 1 }`, in every namespace. */
  mounts?: Record<string, 1 | 2>
  approle?: { roleId: string; secretId: string; mount?: string; token?: VaultTokenSpec }
  kubernetes?: { role: string; jwt: string; mount?: string; token?: VaultTokenSpec }
}

interface Token {
  id: string
  accessor: string
  policies: string[]
  allow: string[] | undefined
  namespace: string
  displayName: string
  entityId: string
  ttl: number
  maxTtl: number
  renewable: boolean
  issuedAt: number
  /** Epoch ms; 0 = never. */
  expiresAt: number
  /** Epoch ms of the explicit max TTL; 0 = none. */
  maxExpiresAt: number
  path: string
}

interface KvVersion {
  data: Record<string, unknown>
  createdTime: string
  deletionTime: string
  destroyed: boolean
}

interface Kv2Secret {
  versions: KvVersion[]
}

interface Fault {
  remaining: number
  status: number
  filter: PathFilter | undefined
  errors: string[] | undefined
}

export type PathFilter = string | RegExp

export interface VaultServer {
  /** `http(s)://127.0.0.1:<port>` */
  url: string
  port: number
  /** A token with no TTL and no policy limit (namespace root). */
  rootToken: string
  /** Write a secret (`secret/app` = mount `secret`, path `app`); on a KV v2 mount this adds a version. Returns the version. */
  setSecret(path: string, data: Record<string, unknown>, opts?: { namespace?: string }): number
  /** Same as `setSecret`: a new version on v2, an overwrite on v1. */
  rotate(path: string, data: Record<string, unknown>, opts?: { namespace?: string }): number
  /** KV v2 soft delete of one version (default latest). */
  deleteVersion(path: string, version?: number, opts?: { namespace?: string }): void
  /** KV v2 destroy of one version. */
  destroyVersion(path: string, version: number, opts?: { namespace?: string }): void
  createToken(spec?: VaultTokenSpec): string
  /** Revoke one token, or (no argument) every token issued by a login. */
  revokeToken(token?: string): void
  /** The token most recently issued by a login (AppRole / Kubernetes). */
  readonly lastIssuedToken: string | undefined
  /** Move the server's clock forward (token expiry) without waiting. */
  advanceClock(ms: number): void
  setLatency(ms: number, filter?: PathFilter): void
  /**
   * Answer the next `n` matching requests with `status` and Vault's error body for it
   * (or `errors`, e.g. the invalid-token text for a 403).
   */
  failNext(n: number, status: number, filter?: PathFilter, errors?: string[]): void
  throttleNext(n: number, filter?: PathFilter): void
  /** Drop pending failures and latency: the server is healthy again. */
  recover(): void
  /** Requests served, optionally only those whose path (`/v1/...`, no query) matches. */
  requestCount(filter?: PathFilter): number
  /** Every request's method, path and the token header it carried (for assertions). */
  readonly log: ReadonlyArray<{ method: string; path: string; namespace: string; token: string | undefined }>
  close(): Promise<void>
}

const DEFAULT_TTL = 3600

/** The 403 text Vault answers for a revoked, expired or unknown token. */
export const INVALID_TOKEN_ERRORS = ['2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n']

function matches(filter: PathFilter | undefined, path: string): boolean {
  if (filter === undefined) return true
  return typeof filter === 'string' ? path.includes(filter) : filter.test(path)
}

function errorText(status: number, path: string): string[] {
  switch (status) {
    case 400:
      return ['bad request']
    case 403:
      return ['1 error occurred:\n\t* permission denied\n\n']
    case 404:
      return []
    case 429:
      return [`request path "${path}": rate limit quota exceeded`]
    case 503:
      return ['Vault is sealed']
    default:
      return ['internal error']
  }
}

export async function startVaultServer(options: VaultServerOptions = {}): Promise<VaultServer> {
  const mounts = options.mounts ?? { secret: 2, kv: 1 }
  const tokens = new Map<string, Token>()
  const issued = new Set<string>()
  // namespace → mount → path → secret
  const kv2 = new Map<string, Kv2Secret>()
  const kv1 = new Map<string, Record<string, unknown>>()
  const faults: Fault[] = []
  const latencies: Array<{ ms: number; filter: PathFilter | undefined }> = []
  const log: Array<{ method: string; path: string; namespace: string; token: string | undefined }> = []
  let clockOffset = 0
  let lastIssuedToken: string | undefined
  const now = () => Date.now() + clockOffset

  const key = (ns: string, mount: string, path: string) => `${ns}\u0000${mount}\u0000${path}`

  function splitPath(full: string): { mount: string; rest: string } {
    const i = full.indexOf('/')
    if (i <= 0) throw new Error(`path ${full} needs a mount and a secret path`)
    const mount = full.slice(0, i)
    if (!(mount in mounts)) throw new Error(`no mount ${mount} (mounts: ${Object.keys(mounts).join(', ')})`)
    return { mount, rest: full.slice(i + 1) }
  }

  function newToken(spec: VaultTokenSpec, path: string): Token {
    const ttl = spec.ttl ?? DEFAULT_TTL
    const t: Token = {
      id: 'hvs.' + randomBytes(18).toString('base64url'),
      accessor: randomBytes(12).toString('base64url'),
      policies: spec.policies ?? ['default'],
      allow: spec.allow,
      namespace: spec.namespace ?? '',
      displayName: spec.displayName ?? 'token',
      entityId: randomUUID(),
      ttl,
      maxTtl: spec.maxTtl ?? 0,
      renewable: spec.renewable ?? ttl > 0,
      issuedAt: now(),
      expiresAt: ttl > 0 ? now() + ttl * 1000 : 0,
      maxExpiresAt: spec.maxTtl ? now() + spec.maxTtl * 1000 : 0,
      path,
    }
    tokens.set(t.id, t)
    return t
  }

  const root = newToken({ ttl: 0, policies: ['root'], displayName: 'root', renewable: false }, 'auth/token/root')

  function liveToken(id: string | undefined, ns: string): Token | undefined {
    if (!id) return undefined
    const t = tokens.get(id)
    if (!t) return undefined
    if (t.expiresAt !== 0 && t.expiresAt <= now()) {
      tokens.delete(id)
      return undefined
    }
    // A token is valid in its own namespace and the namespaces below it.
    if (t.namespace !== '' && ns !== t.namespace && !ns.startsWith(t.namespace + '/')) return undefined
    return t
  }

  function allowed(t: Token, apiPath: string): boolean {
    if (t.allow === undefined) return true
    return t.allow.some((p) => (p.endsWith('*') ? apiPath.startsWith(p.slice(0, -1)) : apiPath === p))
  }

  function authBlock(t: Token, metadata: Record<string, string> | null) {
    return {
      client_token: t.id,
      accessor: t.accessor,
      policies: t.policies,
      token_policies: t.policies,
      metadata,
      lease_duration: remainingTtl(t),
      renewable: t.renewable,
      entity_id: t.entityId,
      token_type: 'service',
      orphan: true,
      mfa_requirement: null,
      num_uses: 0,
    }
  }

  function remainingTtl(t: Token): number {
    return t.expiresAt === 0 ? 0 : Math.max(0, Math.round((t.expiresAt - now()) / 1000))
  }

  function envelope(extra: Record<string, unknown>) {
    return { request_id: randomUUID(), lease_id: '', renewable: false, lease_duration: 0, data: null, wrap_info: null, warnings: null, auth: null, ...extra }
  }

  function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
    const text = body === undefined ? '' : JSON.stringify(body)
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': String(Buffer.byteLength(text)), ...headers })
    res.end(text)
  }

  const sendErrors = (res: ServerResponse, status: number, errors: string[], headers?: Record<string, string>) => send(res, status, { errors }, headers)
  const invalidToken = (res: ServerResponse) => sendErrors(res, 403, INVALID_TOKEN_ERRORS)
  const denied = (res: ServerResponse) => sendErrors(res, 403, ['1 error occurred:\n\t* permission denied\n\n'])

  function rfc3339(ms: number) {
    return new Date(ms).toISOString().replace('Z', '000000Z')
  }

  function login(res: ServerResponse, ns: string, spec: VaultTokenSpec | undefined, path: string, metadata: Record<string, string>) {
    const t = newToken({ ...spec, namespace: ns, displayName: path.replace(/\/login$/, '').replaceAll('/', '-') }, path)
    issued.add(t.id)
    lastIssuedToken = t.id
    send(res, 200, envelope({ auth: authBlock(t, metadata) }))
  }

  function readJson(body: Buffer): Record<string, unknown> | undefined {
    if (body.length === 0) return {}
    try {
      const v: unknown = JSON.parse(body.toString('utf8'))
      return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined
    } catch {
      return undefined
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse, body: Buffer) {
    const url = new URL(req.url ?? '/', 'http://vault')
    const path = url.pathname
    const method = req.method ?? 'GET'
    const ns = String(req.headers['x-vault-namespace'] ?? '').replace(/^\/+|\/+$/g, '')
    const tokenHeader = req.headers['x-vault-token']
    const tokenId = Array.isArray(tokenHeader) ? tokenHeader[0] : tokenHeader
    log.push({ method, path, namespace: ns, token: tokenId })

    const latency = latencies.filter((l) => matches(l.filter, path)).reduce((a, l) => Math.max(a, l.ms), 0)
    if (latency > 0) await new Promise((r) => setTimeout(r, latency))

    const fault = faults.find((f) => f.remaining > 0 && matches(f.filter, path))
    if (fault) {
      fault.remaining--
      return sendErrors(res, fault.status, fault.errors ?? errorText(fault.status, path.replace(/^\/v1\//, '')), fault.status === 429 ? { 'retry-after': '1' } : {})
    }

    if (!path.startsWith('/v1/')) return sendErrors(res, 404, [])
    const apiPath = path.slice('/v1/'.length)

    // --- auth methods (unauthenticated) ---
    if (method === 'POST' || method === 'PUT') {
      const a = options.approle
      if (a && apiPath === `auth/${a.mount ?? 'approle'}/login`) {
        const b = readJson(body)
        if (!b) return sendErrors(res, 400, ['failed to parse JSON input'])
        if (typeof b.role_id !== 'string' || b.role_id === '') return sendErrors(res, 400, ['missing role_id'])
        if (b.role_id !== a.roleId || b.secret_id !== a.secretId) return sendErrors(res, 400, ['invalid role or secret ID'])
        return login(res, ns, a.token, apiPath, { role_name: 'latchkey' })
      }
      const k = options.kubernetes
      if (k && apiPath === `auth/${k.mount ?? 'kubernetes'}/login`) {
        const b = readJson(body)
        if (!b) return sendErrors(res, 400, ['failed to parse JSON input'])
        if (typeof b.role !== 'string' || b.role === '') return sendErrors(res, 400, ['missing role'])
        if (typeof b.jwt !== 'string' || b.jwt === '') return sendErrors(res, 400, ['missing jwt'])
        if (b.role !== k.role) return sendErrors(res, 400, [`invalid role name "${b.role}"`])
        if (b.jwt !== k.jwt) return denied(res)
        return login(res, ns, k.token, apiPath, { role: k.role, service_account_name: 'pipeline', service_account_namespace: 'default' })
      }
    }

    // --- everything else needs a token ---
    const token = liveToken(tokenId, ns)
    if (!token) return tokenId ? invalidToken(res) : denied(res)

    if (apiPath === 'auth/token/lookup-self' && method === 'GET') {
      return send(
        res,
        200,
        envelope({
          data: {
            accessor: token.accessor,
            creation_time: Math.floor(token.issuedAt / 1000),
            creation_ttl: token.ttl,
            display_name: token.displayName,
            entity_id: token.entityId,
            expire_time: token.expiresAt === 0 ? null : rfc3339(token.expiresAt),
            explicit_max_ttl: token.maxTtl,
            id: token.id,
            issue_time: rfc3339(token.issuedAt),
            meta: null,
            num_uses: 0,
            orphan: true,
            path: token.path,
            policies: token.policies,
            renewable: token.renewable,
            ttl: remainingTtl(token),
            type: 'service',
          },
        }),
      )
    }
    if (apiPath === 'auth/token/renew-self' && (method === 'POST' || method === 'PUT')) {
      if (!token.renewable || token.expiresAt === 0) return sendErrors(res, 400, ['lease is not renewable'])
      const b = readJson(body) ?? {}
      const inc = typeof b.increment === 'number' ? b.increment : typeof b.increment === 'string' ? parseInt(b.increment, 10) || token.ttl : token.ttl
      let expiresAt = now() + inc * 1000
      if (token.maxExpiresAt !== 0) expiresAt = Math.min(expiresAt, token.maxExpiresAt)
      token.expiresAt = expiresAt
      const warnings = token.maxExpiresAt !== 0 && expiresAt === token.maxExpiresAt ? ['TTL of "' + inc + 's" exceeded the effective max_ttl; TTL value is capped accordingly'] : null
      return send(res, 200, envelope({ auth: authBlock(token, null), warnings }))
    }

    if (method !== 'GET') return sendErrors(res, 405, ['unsupported operation'])

    // --- KV reads ---
    const i = apiPath.indexOf('/')
    const mount = i > 0 ? apiPath.slice(0, i) : apiPath
    const version = mounts[mount]
    if (version === undefined) {
      return allowed(token, apiPath) ? sendErrors(res, 404, [`no handler for route "${apiPath}". route entry not found.`]) : denied(res)
    }
    if (!allowed(token, apiPath)) return denied(res)
    const rest = i > 0 ? apiPath.slice(i + 1) : ''

    if (version === 1) {
      const data = kv1.get(key(ns, mount, rest))
      if (!data) return sendErrors(res, 404, [])
      return send(res, 200, envelope({ lease_duration: 2764800, data: structuredClone(data), mount_type: 'kv' }))
    }

    if (!rest.startsWith('data/')) return sendErrors(res, 404, [])
    const secret = kv2.get(key(ns, mount, rest.slice('data/'.length)))
    if (!secret) return sendErrors(res, 404, [])
    const q = url.searchParams.get('version')
    const n = q === null || q === '0' ? secret.versions.length : Number(q)
    if (!Number.isInteger(n) || n < 1) return sendErrors(res, 400, ['invalid version'])
    const v = secret.versions[n - 1]
    if (!v) return sendErrors(res, 404, [])
    const metadata = { created_time: v.createdTime, custom_metadata: null, deletion_time: v.deletionTime, destroyed: v.destroyed, version: n }
    if (v.destroyed || v.deletionTime !== '') return send(res, 404, envelope({ data: { data: null, metadata }, mount_type: 'kv' }))
    return send(res, 200, envelope({ data: { data: structuredClone(v.data), metadata }, mount_type: 'kv' }))
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks)).catch(() => {
        if (!res.headersSent) sendErrors(res, 500, ['internal error'])
        else res.destroy()
      })
    })
  }
  const server = options.tls ? https.createServer({ cert: options.tls.cert, key: options.tls.key }, onRequest) : http.createServer(onRequest)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port

  function write(path: string, data: Record<string, unknown>, ns: string): number {
    const { mount, rest } = splitPath(path)
    if (mounts[mount] === 1) {
      kv1.set(key(ns, mount, rest), structuredClone(data))
      return 0
    }
    const k = key(ns, mount, rest)
    const s = kv2.get(k) ?? { versions: [] }
    s.versions.push({ data: structuredClone(data), createdTime: rfc3339(now()), deletionTime: '', destroyed: false })
    kv2.set(k, s)
    return s.versions.length
  }

  function kv2Version(path: string, version: number | undefined, ns: string): KvVersion {
    const { mount, rest } = splitPath(path)
    const s = kv2.get(key(ns, mount, rest))
    const v = s?.versions[(version ?? s.versions.length) - 1]
    if (!v) throw new Error(`no version ${version ?? 'latest'} of ${path}`)
    return v
  }

  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    rootToken: root.id,
    setSecret: (path, data, opts) => write(path, data, opts?.namespace ?? ''),
    rotate: (path, data, opts) => write(path, data, opts?.namespace ?? ''),
    deleteVersion(path, version, opts) {
      kv2Version(path, version, opts?.namespace ?? '').deletionTime = rfc3339(now())
    },
    destroyVersion(path, version, opts) {
      const v = kv2Version(path, version, opts?.namespace ?? '')
      v.destroyed = true
      v.data = {}
    },
    createToken(spec = {}) {
      return newToken(spec, 'auth/token/create').id
    },
    revokeToken(token) {
      if (token !== undefined) {
        tokens.delete(token)
        issued.delete(token)
        return
      }
      for (const id of issued) tokens.delete(id)
      issued.clear()
    },
    get lastIssuedToken() {
      return lastIssuedToken
    },
    advanceClock(ms) {
      clockOffset += ms
    },
    setLatency(ms, filter) {
      latencies.length = 0
      if (ms > 0) latencies.push({ ms, filter })
    },
    failNext(n, status, filter, errors) {
      faults.push({ remaining: n, status, filter, errors })
    },
    throttleNext(n, filter) {
      faults.push({ remaining: n, status: 429, filter, errors: undefined })
    },
    recover() {
      faults.length = 0
      latencies.length = 0
    },
    requestCount(filter) {
      return log.filter((l) => matches(filter, l.path)).length
    },
    log,
    close() {
      server.closeAllConnections()
      return new Promise((r) => server.close(() => r()))
    },
  }
}
