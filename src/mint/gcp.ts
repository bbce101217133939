import { ProviderError } from '../errors.ts'
import { mapGcpError } from '../providers/gcp-errors.ts'
import { parseJsonObject } from '../proxy/secret-fields.ts'
import type { MintSpec } from './compile.ts'
import type { MintCall, Minted, MinterContext, TokenMinter } from './minters.ts'

/**
 * A Google access token via google-auth-library: from a credentials JSON held in a provider
 * (service-account key, `external_account` for Workload Identity Federation), else from
 * Application Default Credentials (GKE Workload Identity, the metadata server, gcloud login).
 * A new client per exchange: the library's own token cache would hand back the token that
 * the upstream just refused.
 */
export async function createGcpMinter(spec: MintSpec, _ctx: MinterContext): Promise<TokenMinter> {
  const o = spec.options
  if (o.type !== 'gcp-access-token') throw new Error('not a gcp-access-token credential')
  const { GoogleAuth } = await import('google-auth-library')
  const where = 'gcp access token'
  return {
    async mint(secret: string | undefined, call: MintCall): Promise<Minted> {
      let json: Record<string, unknown> | undefined
      if (secret !== undefined) {
        json = parseJsonObject(secret)
        if (json === undefined) throw new ProviderError('invalid_secret', `${where}: the secret is not a Google credentials JSON (service-account key or external_account)`)
      }
      try {
        const auth = new GoogleAuth({ scopes: [...o.scopes], ...(json ? { credentials: json } : {}) })
        const client = await auth.getClient()
        const { token } = await client.getAccessToken()
        if (!token) throw new ProviderError('provider_auth_failed', `${where}: the Google credentials returned no token`)
        const expiry = client.credentials.expiry_date
        // A self-signed JWT or a refresh token the library may also hold is scrubbed like the token.
        const more = [client.credentials.id_token, client.credentials.refresh_token].filter((v): v is string => typeof v === 'string' && v.length > 0)
        if (more.length > 0) call.hold(more)
        return { token, lifetimeMs: typeof expiry === 'number' ? expiry - Date.now() : undefined }
      } catch (err) {
        throw mapTokenError(err, where, call.signal)
      }
    },
  }
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
