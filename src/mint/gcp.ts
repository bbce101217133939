import type { AuthClient } from 'google-auth-library'
import { ProviderError } from '../errors.ts'
import { mapGcpError } from '../providers/gcp-errors.ts'
import { parseJsonObject } from '../providers/secret-fields.ts'
import type { MintSpec } from './compile.ts'
import type { MintCall, Minted, MinterContext, TokenMinter } from './minters.ts'

/**
 * A Google access token via google-auth-library: from a credentials JSON held in a provider
 * (service-account key, `external_account` for Workload Identity Federation), else from
 * Application Default Credentials (GKE Workload Identity, the metadata server, gcloud login).
 */
export async function createGcpMinter(spec: MintSpec, _ctx: MinterContext): Promise<TokenMinter> {
  const o = spec.options
  if (o.type !== 'gcp-access-token') throw new Error('not a gcp-access-token credential')
  const lib = await import('google-auth-library')
  const where = 'gcp access token'
  const scopes = [...o.scopes]
  /** A client for one credentials JSON, by its type, with the library's own constructors (its JSON helpers are deprecated). */
  const clientFor = (json: Record<string, unknown>): AuthClient => {
    const type = json.type
    if (type === 'service_account') {
      const jwt = new lib.JWT({ email: str(json.client_email), key: str(json.private_key), keyId: str(json.private_key_id), scopes })
      const tokenUri = str(json.token_uri)
      // google-auth-library posts the key's assertion to Google's fixed endpoint; a key naming
      // another token_uri (a private or sovereign deployment) is honoured, as Python's google-auth does.
      if (tokenUri !== undefined && tokenUri !== GOOGLE_TOKEN_URL) {
        const target = tokenEndpoint(tokenUri)
        jwt.transporter.interceptors.request.add({ resolved: async (c) => (String(c.url) === GOOGLE_TOKEN_URL ? Object.assign(c, { url: target }) : c) })
      }
      return jwt
    }
    if (type === 'external_account') {
      const source = json.credential_source as { environment_id?: unknown; executable?: unknown } | undefined
      if (source?.executable !== undefined) throw new ProviderError('invalid_secret', `${where}: external_account credentials with an executable source are not supported`, { retryable: false })
      const opts = { ...json, scopes } as unknown as ConstructorParameters<typeof lib.IdentityPoolClient>[0]
      return source?.environment_id !== undefined ? new lib.AwsClient(opts as unknown as ConstructorParameters<typeof lib.AwsClient>[0]) : new lib.IdentityPoolClient(opts)
    }
    if (type === 'authorized_user') return new lib.UserRefreshClient({ clientId: str(json.client_id), clientSecret: str(json.client_secret), refreshToken: str(json.refresh_token) })
    throw new ProviderError('invalid_secret', `${where}: the secret is not a Google credentials JSON of type service_account, external_account or authorized_user`, { retryable: false })
  }
  return {
    async mint(secret: string | undefined, call: MintCall): Promise<Minted> {
      let json: Record<string, unknown> | undefined
      if (secret !== undefined) {
        json = parseJsonObject(secret)
        if (json === undefined) throw new ProviderError('invalid_secret', `${where}: the secret is not a Google credentials JSON (service-account key or external_account)`, { retryable: false })
        // The refresh token of an authorized_user JSON is secret like the key.
        if (typeof json.refresh_token === 'string') call.hold([json.refresh_token])
      }
      try {
        // A new client per exchange: the library's own token cache would hand back the token the upstream just refused.
        const client = json ? clientFor(json) : await new lib.GoogleAuth({ scopes }).getClient()
        const { token } = await client.getAccessToken()
        if (!token) throw new ProviderError('provider_auth_failed', `${where}: the Google credentials returned no token`)
        const expiry = client.credentials.expiry_date
        const more = [client.credentials.id_token, client.credentials.refresh_token].filter((v): v is string => typeof v === 'string' && v.length > 0)
        if (more.length > 0) call.hold(more)
        return { token, lifetimeMs: typeof expiry === 'number' ? expiry - Date.now() : undefined }
      } catch (err) {
        throw mapTokenError(err, where, call.signal)
      }
    },
  }
}

const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token'

/** A key's token_uri: https, or http on a loopback address (local emulators and tests). */
function tokenEndpoint(raw: string): URL {
  let u: URL | undefined
  try {
    u = new URL(raw)
  } catch {
    u = undefined
  }
  const loopback = u !== undefined && (u.hostname === 'localhost' || u.hostname === '[::1]' || /^127\./.test(u.hostname))
  if (u === undefined || !(u.protocol === 'https:' || (u.protocol === 'http:' && loopback)) || u.username || u.password) {
    throw new ProviderError('invalid_secret', 'gcp access token: the key\'s token_uri must be an https:// URL (http:// only on loopback)', { retryable: false })
  }
  return u
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined
}

/** A token endpoint's HTTP answer by status; anything else as the Secret Manager mapping does. */
function mapTokenError(err: unknown, where: string, signal: AbortSignal): ProviderError {
  if (err instanceof ProviderError) return err
  const status = (err as { response?: { status?: unknown } })?.response?.status
  if (typeof status === 'number') {
    const providerCode = `HTTP ${status}`
    if (status === 429) return new ProviderError('throttled', `${where}: the token endpoint throttled the request`, { providerCode })
    if (status >= 500) return new ProviderError('provider_unavailable', `${where}: the token endpoint answered HTTP ${status}`, { providerCode })
    return new ProviderError('provider_auth_failed', `${where}: the token endpoint refused the credentials (HTTP ${status})`, { providerCode, retryable: false })
  }
  return mapGcpError(err, 'access token', where, signal)
}
