import { randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { jwtVerify } from 'jose'

/**
 * An OAuth 2.0 authorization server's token endpoint for tests (RFC 6749 §4.4 client
 * credentials, RFC 7523 §2.2 / OIDC `private_key_jwt`), enforcing each client's one
 * authentication method: `client_secret_basic` (RFC 6749 §2.3.1: form-urlencoded id and secret
 * in the Basic header), `client_secret_post`, or `private_key_jwt` (signature checked with
 * `jose` against the client's public key; `iss` = `sub` = client id, `aud` = the token
 * endpoint URL, `exp` required, `jti` never reused). Issues short-lived opaque tokens,
 * answers RFC 6749 §5.2 errors, can rotate a client secret, revoke tokens, throttle and fail.
 */

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt'

export interface OAuthClient {
  method: ClientAuthMethod
  secret?: string
  publicKey?: KeyObject
  /** Scopes the client may ask for; default any. */
  scopes?: string[]
}

export interface TokenRequest {
  clientId: string | undefined
  method: ClientAuthMethod | undefined
  /** The form without client_secret / client_assertion. */
  params: Record<string, string[]>
  status: number
}

export interface OAuthServer {
  url: string
  tokenUrl: string
  /** Token lifetime in seconds for the next tokens. */
  tokenTtl: number
  /** Every token issued, oldest first. */
  readonly issued: string[]
  /** Every client assertion received. */
  readonly assertions: string[]
  readonly requests: TokenRequest[]
  /** Whether a token was issued here, is not revoked and has not expired. */
  isValid(token: string): boolean
  revoke(token: string): void
  rotateSecret(clientId: string, secret: string): void
  /** The next `n` token requests answer this status (429 / 5xx with an optional Retry-After, or an OAuth error body). */
  failNext(n: number, status: number, opts?: { retryAfter?: string; error?: string }): void
  setLatency(ms: number): void
  close(): Promise<void>
}

export async function startOAuthServer(clients: Record<string, OAuthClient>, opts: { tls?: { cert: string; key: string }; tokenTtl?: number } = {}): Promise<OAuthServer> {
  const tokens = new Map<string, { expiresAt: number; revoked: boolean }>()
  const seenJti = new Set<string>()
  const issued: string[] = []
  const assertions: string[] = []
  const requests: TokenRequest[] = []
  const faults: Array<{ n: number; status: number; retryAfter?: string | undefined; error?: string | undefined }> = []
  let latency = 0
  let tokenUrl = ''

  const send = (res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}) => {
    const text = JSON.stringify(body)
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': String(Buffer.byteLength(text)), ...extra })
    res.end(text)
  }
  const same = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b))

  async function handle(req: IncomingMessage, res: ServerResponse, body: string, rec: TokenRequest) {
    if (latency > 0) await new Promise((r) => setTimeout(r, latency))
    if (req.method !== 'POST' || new URL(req.url ?? '/', 'http://x').pathname !== '/token') return send(res, 404, { error: 'not_found' })
    if (!String(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) return send(res, 400, { error: 'invalid_request', error_description: 'form body expected' })
    const form = new URLSearchParams(body)
    for (const [k, v] of form) if (k !== 'client_secret' && k !== 'client_assertion') (rec.params[k] ??= []).push(v)
    const fault = faults.find((f) => f.n > 0)
    if (fault) {
      fault.n--
      return send(res, fault.status, { error: fault.error ?? (fault.status === 429 ? 'slow_down' : 'server_error') }, fault.retryAfter ? { 'retry-after': fault.retryAfter } : {})
    }
    const invalidClient = () => send(res, 401, { error: 'invalid_client', error_description: 'client authentication failed' }, { 'www-authenticate': 'Basic realm="token"' })
    let clientId: string | undefined
    let presented: { method: ClientAuthMethod; secret?: string; assertion?: string } | undefined
    const basic = /^Basic ([A-Za-z0-9+/=]+)$/.exec(String(req.headers.authorization ?? ''))
    if (basic) {
      const decoded = Buffer.from(basic[1] ?? '', 'base64').toString('utf8')
      const colon = decoded.indexOf(':')
      if (colon === -1) return invalidClient()
      clientId = decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '))
      presented = { method: 'client_secret_basic', secret: decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, ' ')) }
    } else if (form.has('client_assertion')) {
      if (form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') return send(res, 400, { error: 'invalid_request', error_description: 'client_assertion_type' })
      const assertion = form.get('client_assertion') ?? ''
      assertions.push(assertion)
      clientId = form.get('client_id') ?? undefined
      presented = { method: 'private_key_jwt', assertion }
    } else if (form.has('client_secret')) {
      clientId = form.get('client_id') ?? undefined
      presented = { method: 'client_secret_post', secret: form.get('client_secret') ?? '' }
    }
    rec.clientId = clientId
    rec.method = presented?.method
    const client = clientId === undefined ? undefined : clients[clientId]
    if (!client || !presented || presented.method !== client.method) return invalidClient()
    if (presented.method === 'private_key_jwt') {
      try {
        const { payload } = await jwtVerify(presented.assertion ?? '', client.publicKey as KeyObject, { issuer: clientId, subject: clientId, audience: tokenUrl, requiredClaims: ['exp', 'jti'] })
        if (seenJti.has(String(payload.jti))) return invalidClient()
        seenJti.add(String(payload.jti))
      } catch {
        return invalidClient()
      }
    } else if (!same(presented.secret ?? '', client.secret ?? '')) return invalidClient()
    if (form.get('grant_type') !== 'client_credentials') return send(res, 400, { error: 'unsupported_grant_type' })
    const scope = form.get('scope')
    if (scope && client.scopes && !scope.split(' ').every((s) => client.scopes?.includes(s))) return send(res, 400, { error: 'invalid_scope', error_description: 'scope not allowed' })
    const token = 'at_' + randomBytes(24).toString('base64url')
    const ttl = server_.tokenTtl
    tokens.set(token, { expiresAt: Date.now() + ttl * 1000, revoked: false })
    issued.push(token)
    return send(res, 200, { access_token: token, token_type: 'Bearer', expires_in: ttl, ...(scope ? { scope } : {}) })
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const rec: TokenRequest = { clientId: undefined, method: undefined, params: {}, status: 0 }
      requests.push(rec)
      res.on('finish', () => (rec.status = res.statusCode))
      handle(req, res, Buffer.concat(chunks).toString('utf8'), rec).catch(() => send(res, 500, { error: 'server_error' }))
    })
  }
  const server = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, onRequest) : http.createServer(onRequest)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`
  tokenUrl = `${url}/token`
  const server_: OAuthServer = {
    url,
    tokenUrl,
    tokenTtl: opts.tokenTtl ?? 3600,
    issued,
    assertions,
    requests,
    isValid(token) {
      const t = tokens.get(token)
      return t !== undefined && !t.revoked && Date.now() < t.expiresAt
    },
    revoke(token) {
      const t = tokens.get(token)
      if (t) t.revoked = true
    },
    rotateSecret(clientId, secret) {
      const c = clients[clientId]
      if (!c) throw new Error(`no client ${clientId}`)
      c.secret = secret
    },
    failNext(n, status, o = {}) {
      faults.push({ n, status, retryAfter: o.retryAfter, error: o.error })
    },
    setLatency(ms) {
      latency = ms
    },
    close() {
      server.closeAllConnections()
      return new Promise((r) => server.close(() => r()))
    },
  }
  return server_
}
