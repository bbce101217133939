import { randomBytes, type KeyObject } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { jwtVerify } from 'jose'

/**
 * Google's OAuth 2.0 token endpoint for service accounts (RFC 7523 JWT bearer grant), as
 * google-auth-library's JWT client calls it: `POST /token` with
 * `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`. The assertion is
 * verified with the service account's public key (`jose`): RS256, `iss` = the account's email,
 * `aud` = `https://oauth2.googleapis.com/token` (the library always signs for Google's endpoint),
 * `scope` present, `exp` within the hour. Answers `{access_token, expires_in, token_type}`.
 */
export interface GoogleTokenServer {
  tokenUri: string
  readonly issued: string[]
  readonly assertions: string[]
  close(): Promise<void>
}

export async function startGoogleTokenServer(account: { email: string; publicKey: KeyObject }, tokenTtl = 3600): Promise<GoogleTokenServer> {
  const issued: string[] = []
  const assertions: string[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' })
        res.end(JSON.stringify(body))
      }
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
      if (req.method !== 'POST' || req.url !== '/token') return send(404, { error: 'not_found' })
      if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') return send(400, { error: 'unsupported_grant_type' })
      const assertion = form.get('assertion') ?? ''
      assertions.push(assertion)
      jwtVerify(assertion, account.publicKey, { issuer: account.email, audience: 'https://oauth2.googleapis.com/token', algorithms: ['RS256'], maxTokenAge: '1h', requiredClaims: ['scope', 'exp'] })
        .then(() => {
          const token = 'ya29.sa-' + randomBytes(24).toString('base64url')
          issued.push(token)
          send(200, { access_token: token, expires_in: tokenTtl, token_type: 'Bearer' })
        })
        .catch(() => send(400, { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' }))
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    tokenUri: `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`,
    issued,
    assertions,
    close() {
      server.closeAllConnections()
      return new Promise((r) => server.close(() => r()))
    },
  }
}
