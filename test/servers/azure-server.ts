import { randomBytes, randomUUID } from 'node:crypto'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'

/**
 * An Azure Key Vault stand-in for tests, written to the service's REST protocol (see
 * `../shared/reference/provider-protocols.md`), with secrets in memory.
 *
 * Two listeners on 127.0.0.1:
 * - the vault (`https` with the given certificate, else plain http):
 *   `GET /secrets/{name}/{version}?api-version=...` (no version → latest),
 *   `GET /secrets?api-version=...&maxresults=N` (list, for `doctor`); challenge-based
 *   bearer auth (a request without a valid token gets 401 + `WWW-Authenticate: Bearer
 *   authorization="https://login.microsoftonline.com/{tenant}", resource="https://vault.azure.net"`);
 *   Key Vault's error shapes `{"error":{"code","message","innererror"?}}` for 400/401/403/404/429/5xx.
 * - an App Service style managed-identity token endpoint (plain http, like the real one on
 *   localhost): `GET /msi/token?api-version=2019-08-01&resource=...` with `X-IDENTITY-HEADER`,
 *   answering `{access_token, expires_on, resource, token_type, client_id}`. Point
 *   `IDENTITY_ENDPOINT` / `IDENTITY_HEADER` at it and `ManagedIdentityCredential` (and so
 *   `DefaultAzureCredential`) uses it.
 *
 * Behaviours copied from the service: names are case-insensitive (the answer's `id` keeps
 * the name as created); "latest" is the newest version even when it is disabled (403
 * `SecretDisabled`, no fallback); an expired secret (`exp` in the past) is still returned
 * (Key Vault treats `exp` as informational); 429 carries no `Retry-After`.
 */

export interface SecretAttributesSpec {
  enabled?: boolean
  /** Expiry, epoch seconds. */
  exp?: number
  /** Not-before, epoch seconds. */
  nbf?: number
  contentType?: string
  tags?: Record<string, string>
}

interface Version {
  id: string
  value: string
  enabled: boolean
  exp: number | undefined
  nbf: number | undefined
  created: number
  updated: number
  contentType: string | undefined
  tags: Record<string, string> | undefined
}

interface Secret {
  /** The name as created (ids use it). */
  name: string
  versions: Version[]
}

export interface AzureServerOptions {
  /** Serve the vault over TLS with this certificate (issued for 127.0.0.1). */
  tls?: { cert: string; key: string }
  tenantId?: string
  /** Object id / app id put in issued tokens (`oid`, `appid`). */
  principal?: { oid: string; appid: string }
  /** Lifetime of issued tokens, seconds. Default 3600. */
  tokenTtl?: number
  /** Also serve the same vault over plain http (`plainVaultUrl`), e.g. next to a TLS one. */
  plain?: boolean
}

export interface AzureServer {
  /** `https://127.0.0.1:PORT` (or `http://` without TLS). */
  vaultUrl: string
  /** The same vault (same secrets and tokens) over plain http, with `plain: true`. */
  plainVaultUrl: string | undefined
  /** For `IDENTITY_ENDPOINT`. */
  identityEndpoint: string
  /** For `IDENTITY_HEADER`. */
  identityHeader: string
  tenantId: string
  principal: { oid: string; appid: string }
  /** Create a secret (or add a version); returns the new version id. */
  setSecret(name: string, value: string, attrs?: SecretAttributesSpec): string
  /** Add a new enabled version (the new latest); returns its id. */
  rotate(name: string, value: string): string
  /** Disable a version (default: the latest). */
  disable(name: string, version?: string): void
  /** Set `exp` of the latest version (epoch seconds). */
  expire(name: string, exp: number): void
  /** Answer 403 ForbiddenByRbac for this secret (as a role assignment missing). */
  deny(name: string, denied?: boolean): void
  /** Forget every issued token: the next vault call with one gets 401. */
  revokeTokens(): void
  /** Delay every vault answer by this many ms. */
  setLatency(ms: number): void
  /** The next `n` vault calls (after auth; only reads of `name` when given) answer `status` with Key Vault's error shape. */
  failNext(n: number, status: number, name?: string): void
  /** The next `n` vault calls (after auth; only reads of `name` when given) answer 429 without Retry-After. */
  throttleNext(n: number, name?: string): void
  /** Authorised reads of one secret (any case). */
  reads(name: string): number
  /** The next `n` token requests answer `status`. */
  failTokensNext(n: number, status: number): void
  /** Lifetime of tokens issued from now on, seconds. */
  setTokenTtl(seconds: number): void
  /**
   * Requests served, by kind: `get` = secret reads that passed the bearer check (one per
   * provider call once a token is held), `list`, `challenge` = 401 challenges, `token` =
   * token-endpoint calls. Without a kind: `get` + `list`.
   */
  requestCount(kind?: 'get' | 'list' | 'challenge' | 'token'): number
  close(): Promise<void>
}

const NAME = /^[0-9a-zA-Z-]{1,127}$/
const VERSION = /^[0-9a-f]{32}$/

function b64url(v: unknown): string {
  return Buffer.from(JSON.stringify(v)).toString('base64url')
}

export async function startAzureServer(opts: AzureServerOptions = {}): Promise<AzureServer> {
  const tenantId = opts.tenantId ?? '72f988bf-86f1-41af-91ab-2d7cd011db47'
  const principal = opts.principal ?? { oid: randomUUID(), appid: randomUUID() }
  let tokenTtl = opts.tokenTtl ?? 3600
  const identityHeader = randomBytes(16).toString('hex')
  const secrets = new Map<string, Secret>()
  const denied = new Set<string>()
  const tokens = new Map<string, number>()
  const counts = { get: 0, list: 0, challenge: 0, token: 0 }
  let latency = 0
  let fail: { n: number; status: number; name: string | undefined } = { n: 0, status: 500, name: undefined }
  let throttle: { n: number; name: string | undefined } = { n: 0, name: undefined }
  const readsByName = new Map<string, number>()
  let tokenFail = { n: 0, status: 500 }
  let vaultUrl = ''
  const timers = new Set<NodeJS.Timeout>()

  const sendJson = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    const text = JSON.stringify(body)
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength(text)),
      'x-ms-request-id': randomUUID(),
      'x-ms-keyvault-service-version': '1.9.0.0',
      ...headers,
    })
    res.end(text)
  }
  const kvError = (res: ServerResponse, status: number, code: string, message: string, inner?: string, headers?: Record<string, string>) =>
    sendJson(res, status, { error: { code, message, ...(inner ? { innererror: { code: inner } } : {}) } }, headers)

  const challenge = (res: ServerResponse, message: string) => {
    counts.challenge++
    kvError(res, 401, 'Unauthorized', message, undefined, {
      'www-authenticate': `Bearer authorization="https://login.microsoftonline.com/${tenantId}", resource="https://vault.azure.net"`,
    })
  }

  const bundle = (base: string, s: Secret, v: Version, withValue: boolean) => ({
    ...(withValue ? { value: v.value } : {}),
    id: `${base}/secrets/${s.name}/${v.id}`,
    ...(v.contentType ? { contentType: v.contentType } : {}),
    attributes: {
      enabled: v.enabled,
      ...(v.nbf !== undefined ? { nbf: v.nbf } : {}),
      ...(v.exp !== undefined ? { exp: v.exp } : {}),
      created: v.created,
      updated: v.updated,
      recoveryLevel: 'Recoverable+Purgeable',
      recoverableDays: 90,
    },
    ...(v.tags ? { tags: v.tags } : {}),
  })

  const notFound = (res: ServerResponse, name: string) =>
    kvError(
      res,
      404,
      'SecretNotFound',
      `A secret with (name/id) ${name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182`,
    )

  const handleVault = (base: string, req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x')
    // The SDK may percent-encode query keys (`api%2Dversion`): compare decoded keys.
    const query = new Map<string, string>()
    for (const part of url.search.replace(/^\?/, '').split('&')) {
      if (!part) continue
      const [k = '', v = ''] = part.split('=')
      query.set(decodeURIComponent(k), decodeURIComponent(v.replace(/\+/g, ' ')))
    }
    if (req.method !== 'GET') return kvError(res, 405, 'MethodNotAllowed', `The requested resource does not support http method '${req.method}'.`)
    const segs = url.pathname.split('/').filter((s, i, all) => s !== '' || i < all.length - 1)
    // ['', 'secrets', name, version?]
    if (segs[1] !== 'secrets') return kvError(res, 404, 'NotFound', 'The requested resource was not found.')
    const isList = segs.length === 2 || (segs.length === 3 && segs[2] === '')
    const auth = req.headers.authorization
    const m = typeof auth === 'string' ? /^Bearer (\S+)$/.exec(auth) : null
    if (!m) return challenge(res, 'AKV10000: Request is missing a Bearer or PoP token.')
    const exp = tokens.get(m[1]!)
    if (exp === undefined || exp * 1000 < Date.now()) return challenge(res, 'AKV10032: Invalid issuer or token expired.')
    if (isList) counts.list++
    else counts.get++
    const target = isList ? undefined : decodeURIComponent(segs[2] ?? '').toLowerCase()
    if (target !== undefined) readsByName.set(target, (readsByName.get(target) ?? 0) + 1)
    const applies = (name: string | undefined) => name === undefined || name.toLowerCase() === target
    if (!query.has('api-version')) return kvError(res, 400, 'BadParameter', 'The api-version parameter is missing.')
    if (throttle.n > 0 && applies(throttle.name)) {
      throttle.n--
      return kvError(res, 429, 'Throttled', 'Request was not processed because too many requests were received. Reason: A single client sent too many requests.')
    }
    if (fail.n > 0 && applies(fail.name)) {
      fail.n--
      const code = fail.status === 503 ? 'ServiceUnavailable' : fail.status >= 500 ? 'InternalServerError' : 'BadRequest'
      return kvError(res, fail.status, code, 'The service encountered an error.')
    }
    if (isList) {
      const max = Number(query.get('maxresults') ?? '25')
      const value = [...secrets.values()].slice(0, max).flatMap((s) => {
        const v = s.versions.at(-1)
        if (!v) return []
        const { id, attributes, contentType, tags } = bundle(base, s, v, false) as ReturnType<typeof bundle> & { contentType?: string; tags?: Record<string, string> }
        return [{ id: id.replace(/\/[0-9a-f]{32}$/, ''), attributes, ...(contentType ? { contentType } : {}), ...(tags ? { tags } : {}) }]
      })
      return sendJson(res, 200, { value, nextLink: null })
    }
    const rawName = decodeURIComponent(segs[2] ?? '')
    const version = decodeURIComponent(segs[3] ?? '')
    if (segs.length > 4 || !NAME.test(rawName) || (version !== '' && !VERSION.test(version))) {
      return kvError(res, 400, 'BadParameter', 'The request URI contains an invalid name or version.')
    }
    if (denied.has(rawName.toLowerCase())) {
      return kvError(
        res,
        403,
        'Forbidden',
        `Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid=${principal.appid};oid=${principal.oid}\r\nAction: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'`,
        'ForbiddenByRbac',
      )
    }
    const s = secrets.get(rawName.toLowerCase())
    const v = s && (version === '' ? s.versions.at(-1) : s.versions.find((x) => x.id === version))
    if (!s || !v) return notFound(res, version === '' ? rawName : `${rawName}/${version}`)
    if (!v.enabled) return kvError(res, 403, 'Forbidden', 'Operation get is not allowed on a disabled secret.', 'SecretDisabled')
    return sendJson(res, 200, bundle(base, s, v, true))
  }

  const onVault = (base: () => string) => (req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    req.on('end', () => {
      if (latency <= 0) return handleVault(base(), req, res)
      const t = setTimeout(() => {
        timers.delete(t)
        if (!res.destroyed) handleVault(base(), req, res)
      }, latency)
      timers.add(t)
      res.on('close', () => {
        clearTimeout(t)
        timers.delete(t)
      })
    })
  }

  const onIdentity = (req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    const url = new URL(req.url ?? '/', 'http://x')
    counts.token++
    if (url.pathname !== '/msi/token' || req.method !== 'GET') return sendJson(res, 404, { statusCode: 404, message: 'not found' })
    if (req.headers['x-identity-header'] !== identityHeader) return sendJson(res, 401, { statusCode: 401, message: 'Unauthorized: X-IDENTITY-HEADER is missing or wrong' })
    if (url.searchParams.get('api-version') !== '2019-08-01') return sendJson(res, 400, { statusCode: 400, message: 'api-version 2019-08-01 required' })
    const resource = url.searchParams.get('resource')
    if (!resource) return sendJson(res, 400, { statusCode: 400, message: 'resource is required' })
    if (tokenFail.n > 0) {
      tokenFail.n--
      return sendJson(res, tokenFail.status, { statusCode: tokenFail.status, message: 'token endpoint failure' })
    }
    const now = Math.floor(Date.now() / 1000)
    const expiresOn = now + tokenTtl
    const access = [
      b64url({ typ: 'JWT', alg: 'RS256' }),
      b64url({ aud: resource, iss: `https://sts.windows.net/${tenantId}/`, iat: now, nbf: now, exp: expiresOn, oid: principal.oid, appid: principal.appid, tid: tenantId, sub: principal.oid }),
      randomBytes(32).toString('base64url'),
    ].join('.')
    if (resource.replace(/\/$/, '') === 'https://vault.azure.net') tokens.set(access, expiresOn)
    sendJson(res, 200, { access_token: access, expires_on: String(expiresOn), resource, token_type: 'Bearer', client_id: principal.appid })
  }

  let plainVaultUrl: string | undefined
  const vault = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, onVault(() => vaultUrl)) : http.createServer(onVault(() => vaultUrl))
  const plain = opts.plain ? http.createServer(onVault(() => plainVaultUrl ?? '')) : undefined
  const identity = http.createServer(onIdentity)
  const servers = [vault, identity, ...(plain ? [plain] : [])]
  for (const srv of servers) await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  vaultUrl = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${(vault.address() as AddressInfo).port}`
  if (plain) plainVaultUrl = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`
  const identityEndpoint = `http://127.0.0.1:${(identity.address() as AddressInfo).port}/msi/token`

  const latest = (name: string): { s: Secret; v: Version } => {
    const s = secrets.get(name.toLowerCase())
    const v = s?.versions.at(-1)
    if (!s || !v) throw new Error(`no secret ${name}`)
    return { s, v }
  }

  const setSecret = (name: string, value: string, attrs: SecretAttributesSpec = {}): string => {
    if (!NAME.test(name)) throw new Error(`invalid Key Vault secret name ${name}`)
    const key = name.toLowerCase()
    const s = secrets.get(key) ?? { name, versions: [] }
    secrets.set(key, s)
    const now = Math.floor(Date.now() / 1000)
    const id = randomBytes(16).toString('hex')
    s.versions.push({ id, value, enabled: attrs.enabled ?? true, exp: attrs.exp, nbf: attrs.nbf, created: now, updated: now, contentType: attrs.contentType, tags: attrs.tags })
    return id
  }

  return {
    vaultUrl,
    plainVaultUrl,
    identityEndpoint,
    identityHeader,
    tenantId,
    principal,
    setSecret,
    rotate(name, value) {
      latest(name)
      return setSecret(name, value)
    },
    disable(name, version) {
      const { s, v } = latest(name)
      const target = version === undefined ? v : s.versions.find((x) => x.id === version)
      if (!target) throw new Error(`no version ${version} of ${name}`)
      target.enabled = false
      target.updated = Math.floor(Date.now() / 1000)
    },
    expire(name, exp) {
      latest(name).v.exp = exp
    },
    deny(name, isDenied = true) {
      if (isDenied) denied.add(name.toLowerCase())
      else denied.delete(name.toLowerCase())
    },
    revokeTokens() {
      tokens.clear()
    },
    setLatency(ms) {
      latency = ms
    },
    failNext(n, status, name) {
      fail = { n, status, name }
    },
    throttleNext(n, name) {
      throttle = { n, name }
    },
    reads(name) {
      return readsByName.get(name.toLowerCase()) ?? 0
    },
    failTokensNext(n, status) {
      tokenFail = { n, status }
    },
    setTokenTtl(seconds) {
      tokenTtl = seconds
    },
    requestCount(kind) {
      return kind ? counts[kind] : counts.get + counts.list
    },
    async close() {
      for (const t of timers) clearTimeout(t)
      timers.clear()
      for (const srv of servers) srv.closeAllConnections?.()
      await Promise.all(servers.map((srv) => new Promise<void>((r) => srv.close(() => r()))))
    },
  }
}
