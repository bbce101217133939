import { createPrivateKey, type KeyObject, type webcrypto } from 'node:crypto'
import { rootCertificates } from 'node:tls'
import * as oauth from 'oauth4webapi'
import { Agent, fetch as undiciFetch } from 'undici'
import { ProviderError } from '../errors.ts'
import { parseRetryAfter } from '../providers/retry-after.ts'
import type { MintSpec } from './compile.ts'
import type { MintCall, Minted, MinterContext, TokenMinter } from './minters.ts'

/** Longest Retry-After a token endpoint may ask for. */
const RETRY_AFTER_CAP_MS = 60_000

/** OAuth2 errors about the client itself: a retry with the same secret fails the same way. */
const CLIENT_ERRORS = new Set(['invalid_client', 'unauthorized_client'])

/**
 * OAuth 2.0 client credentials with `oauth4webapi`: the library builds the request (client
 * authentication, the private_key_jwt assertion) and validates the answer; latchkey maps its
 * failures to error codes and keeps every secret it sends or receives scrubbed.
 */
export function createOAuth2Minter(spec: MintSpec, ctx: MinterContext): TokenMinter {
  const o = spec.options
  if (o.type !== 'oauth2' || spec.tokenUrl === undefined) throw new Error('not an oauth2 credential')
  const tokenUrl = spec.tokenUrl
  const as: oauth.AuthorizationServer = { issuer: tokenUrl.href, token_endpoint: tokenUrl.href }
  const client: oauth.Client = { client_id: o.clientId }
  const params = new URLSearchParams()
  if (o.scope) params.set('scope', o.scope.join(' '))
  if (o.audience) params.set('audience', o.audience)
  for (const r of o.resource ?? []) params.append('resource', r)
  for (const [k, v] of Object.entries(o.params ?? {})) params.set(k, v)
  const where = `oauth2 token endpoint ${tokenUrl.origin}${tokenUrl.pathname}`
  // Node's `ca` replaces the system store, so the extra CA is added to it.
  const agent = new Agent({ connect: ctx.ca ? { ca: [...rootCertificates, ctx.ca] } : {} })

  /** The private key as a CryptoKey, parsed once per secret value. */
  let keyCache: { pem: string; key: Promise<webcrypto.CryptoKey> } | undefined
  const privateKey = (pem: string): Promise<webcrypto.CryptoKey> => {
    if (keyCache?.pem !== pem) keyCache = { pem, key: toCryptoKey(pem) }
    return keyCache.key
  }

  return {
    async mint(secret: string | undefined, call: MintCall): Promise<Minted> {
      if (secret === undefined) throw new ProviderError('provider_config', `${where}: no client secret or key`)
      let auth: oauth.ClientAuth
      if (o.auth === 'client_secret_basic') auth = oauth.ClientSecretBasic(secret)
      else if (o.auth === 'client_secret_post') auth = oauth.ClientSecretPost(secret)
      else {
        const key = await privateKey(secret).catch(() => {
          throw new ProviderError('invalid_secret', `${where}: the private_key_jwt key is not a PEM private key of a type it takes (RSA, EC P-256/P-384/P-521, Ed25519; not RSA-PSS-only keys)`)
        })
        const audience = o.assertionAudience ?? tokenUrl.href
        auth = oauth.PrivateKeyJwt({ key, ...(o.keyId ? { kid: o.keyId } : {}) }, { [oauth.modifyAssertion]: (_h, payload) => void (payload.aud = audience) })
      }
      let response: Response
      try {
        response = await oauth.clientCredentialsGrantRequest(as, client, auth, params, {
          signal: call.signal,
          [oauth.allowInsecureRequests]: tokenUrl.protocol === 'http:',
          [oauth.customFetch]: (url, init) => {
            // The assertion is a bearer credential while it lives: scrubbed before it is sent.
            const body = new URLSearchParams(String(init.body))
            const assertion = body.get('client_assertion')
            if (assertion) call.hold([assertion])
            return undiciFetch(url, { ...init, dispatcher: agent, redirect: 'manual' }) as unknown as Promise<Response>
          },
        })
      } catch (err) {
        throw unreachable(err, where, call.signal)
      }
      if (response.status === 429 || response.status >= 500) {
        await response.body?.cancel()
        const retryAfterMs = parseRetryAfter(response.headers.get('retry-after') ?? undefined, RETRY_AFTER_CAP_MS)
        throw response.status === 429
          ? new ProviderError('throttled', `${where}: throttled (HTTP 429)`, { providerCode: '429', retryAfterMs })
          : new ProviderError('provider_unavailable', `${where}: answered HTTP ${response.status}`, { providerCode: String(response.status), retryAfterMs })
      }
      let result: oauth.TokenEndpointResponse
      try {
        result = await oauth.processClientCredentialsResponse(as, client, response)
      } catch (err) {
        // A 401 with WWW-Authenticate is raised before its body is read: the body still holds the OAuth2 error code.
        throw refused(err, where, err instanceof oauth.WWWAuthenticateChallengeError ? await oauthErrorIn(err.response) : undefined)
      }
      const more = [result.refresh_token, result.id_token].filter((v): v is string => typeof v === 'string' && v.length > 0)
      if (more.length > 0) call.hold(more)
      if (result.token_type.toLowerCase() !== 'bearer') throw new ProviderError('provider_config', `${where}: issued a ${safeWord(result.token_type)} token; only Bearer tokens are supported`, { retryable: false })
      return { token: result.access_token, lifetimeMs: typeof result.expires_in === 'number' ? result.expires_in * 1000 : undefined }
    },
    async close() {
      await agent.close()
    },
  }
}

/** A refusal or a malformed answer, by OAuth2 error code and HTTP status only (error_description is the server's text, not ours to log). */
function refused(err: unknown, where: string, challengeError?: string): ProviderError {
  if (err instanceof oauth.ResponseBodyError) {
    const code = safeWord(err.error)
    const providerCode = `${err.status} ${code}`
    if (CLIENT_ERRORS.has(err.error) || err.status === 401) {
      return new ProviderError('provider_auth_failed', `${where}: refused the client (${code}): check clientId, the client secret or key, and the auth method`, { providerCode, retryable: false })
    }
    return new ProviderError('provider_config', `${where}: refused the token request (${code}): check scope, audience, resource and params`, { providerCode, retryable: false })
  }
  if (err instanceof oauth.WWWAuthenticateChallengeError) {
    const code = challengeError ?? safeWord(err.cause[0]?.parameters.error)
    const known = code !== 'unknown'
    return new ProviderError('provider_auth_failed', `${where}: refused the client (${known ? code : `HTTP ${err.status} challenge`}): check clientId, the client secret or key, and the auth method`, { providerCode: known ? `${err.status} ${code}` : String(err.status), retryable: false })
  }
  const e = err as { code?: unknown; name?: unknown }
  const code = typeof e?.code === 'string' ? safeWord(e.code) : 'error'
  return new ProviderError('provider_unavailable', `${where}: answered with an invalid token response (${code})`, { providerCode: code, retryable: true })
}

/** The `error` member of an OAuth2 error body, reduced to a safe word; undefined when there is none. */
async function oauthErrorIn(response: Response): Promise<string | undefined> {
  try {
    const body = (await response.clone().json()) as { error?: unknown }
    const word = safeWord(body?.error)
    return word === 'unknown' ? undefined : word
  } catch {
    return undefined
  }
}

/** No HTTP answer: the request did not get through. */
function unreachable(err: unknown, where: string, signal: AbortSignal): ProviderError {
  if (signal.aborted) return new ProviderError('provider_timeout', `${where}: did not answer in time`)
  const e = err as { name?: unknown; code?: unknown; cause?: { code?: unknown } }
  const code = [e?.name, e?.cause?.code ?? e?.code].filter((x): x is string => typeof x === 'string').map(safeWord).join(' ')
  return new ProviderError('provider_unavailable', `${where}: unreachable (${code || 'error'})`, { providerCode: code || undefined })
}

/** A server-chosen word, reduced to a shape that cannot smuggle text into a log. */
function safeWord(s: unknown): string {
  return typeof s === 'string' && /^[A-Za-z0-9_.:-]{1,64}$/.test(s) ? s : 'unknown'
}

/**
 * A PEM private key as a signing CryptoKey, with the JWS algorithm its type implies (RSA:
 * RS256, EC: ES256/384/512, Ed25519: oauth4webapi's `Ed25519`). A key typed RSA-PSS (OID id-RSASSA-PSS) is
 * refused: WebCrypto, which signs the assertion, cannot import one.
 */
async function toCryptoKey(pem: string): Promise<webcrypto.CryptoKey> {
  const k: KeyObject = createPrivateKey(pem)
  const d = k.asymmetricKeyDetails
  switch (k.asymmetricKeyType) {
    case 'rsa':
      return k.toCryptoKey({ name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['sign'])
    case 'ec':
      return k.toCryptoKey({ name: 'ECDSA', namedCurve: ecCurve(d?.namedCurve) }, false, ['sign'])
    case 'ed25519':
      return k.toCryptoKey({ name: 'Ed25519' }, false, ['sign'])
    default:
      throw new Error('unsupported key type')
  }
}

function ecCurve(name: string | undefined): string {
  if (name === 'prime256v1' || name === 'P-256') return 'P-256'
  if (name === 'secp384r1' || name === 'P-384') return 'P-384'
  if (name === 'secp521r1' || name === 'P-521') return 'P-521'
  throw new Error('unsupported curve')
}
