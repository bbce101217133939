import type { AccessToken, GetTokenOptions, TokenCredential } from '@azure/identity'

/**
 * Wraps the Azure credential so that a failed token refresh falls back to the token in
 * hand while that token was still valid when the refresh began.
 *
 * Why: Key Vault's challenge policy (`@azure/keyvault-common` token cycler) starts a
 * background refresh ahead of expiry and never attaches a handler to it: if the identity
 * endpoint stays down until the old token expires, that promise rejects unhandled and
 * Node ends the process. Answering a failed refresh with the still-valid token lets the
 * background job finish; once the token has really expired, the next fetch refreshes in
 * the foreground and its failure reaches latchkey as `provider_auth_failed`.
 */
export class FallbackTokenCredential implements TokenCredential {
  readonly #inner: TokenCredential
  readonly #last = new Map<string, AccessToken>()

  constructor(inner: TokenCredential) {
    this.#inner = inner
  }

  async getToken(scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken | null> {
    const key = `${[scopes].flat().join(' ')}\u0000${options?.tenantId ?? ''}`
    const started = Date.now()
    try {
      const token = await this.#inner.getToken(scopes, options)
      if (token) this.#last.set(key, token)
      return token
    } catch (err) {
      const last = this.#last.get(key)
      // A claims challenge means the service refused the token in hand: never answer with it.
      if (last && last.expiresOnTimestamp > started && !options?.claims) return last
      throw err
    }
  }
}
