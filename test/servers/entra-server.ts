import { randomBytes } from 'node:crypto'
import https from 'node:https'
import type { AddressInfo } from 'node:net'

/**
 * A Microsoft Entra ID (v2.0 endpoint) stand-in for `ClientSecretCredential`, which MSAL drives
 * with `authorityHost` pointing here (and instance discovery off, as for a private cloud):
 * `GET /{tenant}/v2.0/.well-known/openid-configuration`, then
 * `POST /{tenant}/oauth2/v2.0/token` (client credentials; `client_id` + `client_secret` in the
 * form). A wrong secret answers 401 `invalid_client` with an AADSTS code, as Entra does.
 */
export interface EntraServer {
  url: string
  tenantId: string
  readonly issued: string[]
  tokenRequests: number
  rotateSecret(secret: string): void
  close(): Promise<void>
}

export async function startEntraServer(opts: { tls: { cert: string; key: string }; clientId: string; secret: string; tokenTtl?: number }): Promise<EntraServer> {
  const tenantId = '72f988bf-0000-4000-8000-000000000001'
  let secret = opts.secret
  const issued: string[] = []
  let url = ''
  const state = { tokenRequests: 0 }
  const server = https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const send = (status: number, body: unknown) => {
        const text = JSON.stringify(body)
        res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)) })
        res.end(text)
      }
      const path = new URL(req.url ?? '/', 'https://x').pathname
      const base = `${url}/${tenantId}`
      if (req.method === 'GET' && path === `/${tenantId}/v2.0/.well-known/openid-configuration`) {
        return send(200, {
          token_endpoint: `${base}/oauth2/v2.0/token`,
          authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
          end_session_endpoint: `${base}/oauth2/v2.0/logout`,
          jwks_uri: `${base}/discovery/v2.0/keys`,
          issuer: `${base}/v2.0`,
          response_types_supported: ['code', 'id_token', 'token'],
          token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
        })
      }
      if (req.method === 'POST' && path === `/${tenantId}/oauth2/v2.0/token`) {
        state.tokenRequests++
        const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
        if (form.get('grant_type') !== 'client_credentials') return send(400, { error: 'unsupported_grant_type', error_codes: [70003] })
        if (form.get('client_id') !== opts.clientId || form.get('client_secret') !== secret) {
          return send(401, { error: 'invalid_client', error_description: 'AADSTS7000215: Invalid client secret provided.', error_codes: [7000215] })
        }
        const token = 'eyJ0eXAiOiJKV1QifQ.' + randomBytes(24).toString('base64url') + '.sig'
        issued.push(token)
        const ttl = opts.tokenTtl ?? 3600
        return send(200, { token_type: 'Bearer', expires_in: ttl, ext_expires_in: ttl, access_token: token })
      }
      send(404, { error: 'not_found' })
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url,
    tenantId,
    issued,
    get tokenRequests() {
      return state.tokenRequests
    },
    rotateSecret(s) {
      secret = s
    },
    close() {
      server.closeAllConnections()
      return new Promise((r) => server.close(() => r()))
    },
  }
}
