import { ProviderError } from '../errors.ts'
import { parseRetryAfter } from './retry-after.ts'

/**
 * Map what the Azure SDK throws to a `ProviderError`.
 *
 * `RestError` carries the request and the response (`bodyAsText`), and identity errors
 * carry token-endpoint answers; none of that is copied. The resulting error has our own
 * message, `providerCode` = HTTP status + Key Vault's error code (or the identity error
 * class), and no `cause`.
 */

const CREDENTIAL_ERRORS = new Set(['CredentialUnavailableError', 'AuthenticationError', 'AggregateAuthenticationError', 'AuthenticationRequiredError'])

/** A Key Vault error code is a short identifier; anything else is not kept. */
function safeCode(v: unknown): string | undefined {
  return typeof v === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(v) ? v : undefined
}

/** The `innererror.code` of a Key Vault error body (`SecretDisabled`, `ForbiddenByRbac`). */
function innerCode(err: { details?: unknown; response?: { bodyAsText?: unknown } }): string | undefined {
  // The SDK deserialises `innererror` as `innerError`; raw bodies keep the wire name.
  const error = (err.details as { error?: { innerError?: { code?: unknown }; innererror?: { code?: unknown } } } | undefined)?.error
  const fromDetails = safeCode(error?.innerError?.code) ?? safeCode(error?.innererror?.code)
  if (fromDetails) return fromDetails
  // Older API versions say it only in words ("Operation get is not allowed on a disabled secret.").
  const message = (err.details as { error?: { message?: unknown } } | undefined)?.error?.message
  if (typeof message === 'string' && /not allowed on a disabled secret/i.test(message)) return 'SecretDisabled'
  const text = err.response?.bodyAsText
  if (typeof text !== 'string' || text.length > 16_384) return undefined
  try {
    return safeCode((JSON.parse(text) as { error?: { innererror?: { code?: unknown } } }).error?.innererror?.code)
  } catch {
    return undefined
  }
}

function retryAfterMs(err: { response?: { headers?: { get?(name: string): string | undefined } } }): number | undefined {
  return parseRetryAfter(err.response?.headers?.get?.('retry-after'), 60_000)
}

/**
 * `what` names the thing (`secret api-token`), `where` the provider (`azure provider kv`);
 * neither is secret.
 */
export function mapAzureError(err: unknown, what: string, where: string, signal?: AbortSignal): ProviderError {
  if (err instanceof ProviderError) return err
  const e = err as {
    name?: unknown
    code?: unknown
    statusCode?: unknown
    details?: unknown
    response?: { bodyAsText?: unknown; headers?: { get?(name: string): string | undefined } }
    errors?: unknown
  }
  const name = typeof e?.name === 'string' ? e.name : 'Error'
  if (signal?.aborted || name === 'AbortError') {
    return new ProviderError('provider_timeout', `${where}: ${what}: Key Vault did not answer in time`, { providerCode: 'ABORTED' })
  }
  if (CREDENTIAL_ERRORS.has(name)) {
    // A token endpoint that is down or throttling is transient; a missing or refused identity is not.
    // DefaultAzureCredential wraps each credential's failure in an AggregateAuthenticationError.
    // DefaultAzureCredential also turns a managed-identity failure into "unavailable", keeping
    // MSAL's error (with the endpoint's HTTP `status`) as its cause.
    type Inner = { statusCode?: unknown; cause?: { status?: unknown } }
    const inner: Inner[] = Array.isArray(e.errors) ? (e.errors as Inner[]) : [e as Inner]
    const statuses = inner.map((x) => (typeof x?.statusCode === 'number' ? x.statusCode : x?.cause?.status)).filter((x): x is number => typeof x === 'number')
    const status = statuses[0]
    const transient = statuses.some((s) => s >= 500 || s === 429)
    const why =
      status !== undefined
        ? `the Azure identity endpoint refused or failed the token request (HTTP ${status})`
        : name === 'CredentialUnavailableError' || name === 'AggregateAuthenticationError'
          ? 'no Azure credential produced a token (workload identity, managed identity, environment and Azure CLI are unavailable or failed)'
          : 'the Azure identity endpoint refused or failed the token request'
    return new ProviderError('provider_auth_failed', `${where}: ${what}: ${why}`, { providerCode: status !== undefined ? `${name} ${status}` : name, retryable: transient })
  }
  const status = typeof e.statusCode === 'number' ? e.statusCode : undefined
  const code = safeCode(e.code)
  if (status !== undefined) {
    const inner = innerCode(e)
    const providerCode = [String(status), code, inner].filter(Boolean).join(' ')
    if (status === 404) return new ProviderError('secret_not_found', `${where}: ${what} does not exist in the vault`, { providerCode })
    if (status === 401) {
      return new ProviderError('provider_auth_failed', `${where}: ${what}: Key Vault rejected the access token (wrong tenant or audience, or expired)`, { providerCode })
    }
    if (status === 403) {
      if (inner === 'SecretDisabled') return new ProviderError('access_denied', `${where}: ${what} is disabled (Key Vault never falls back to an older version)`, { providerCode })
      const how = inner === 'ForbiddenByRbac' ? 'the identity has no role allowing secrets/getSecret (grant "Key Vault Secrets User")' : 'access denied by the vault policy or network rules'
      return new ProviderError('access_denied', `${where}: ${what}: ${how}`, { providerCode })
    }
    if (status === 429) {
      return new ProviderError('throttled', `${where}: ${what}: Key Vault throttled the request`, { providerCode, retryAfterMs: retryAfterMs(e) })
    }
    if (status >= 500) return new ProviderError('provider_unavailable', `${where}: ${what}: Key Vault answered HTTP ${status}`, { providerCode })
    return new ProviderError('provider_config', `${where}: ${what}: Key Vault refused the request (HTTP ${status})`, { providerCode, retryable: false })
  }
  // No HTTP answer: connection refused, DNS, TLS. The SDK's code is `REQUEST_SEND_ERROR`;
  // the socket code is not exposed reliably, so only the class and code are kept.
  return new ProviderError('provider_unavailable', `${where}: ${what}: Key Vault is unreachable (${[name, code].filter(Boolean).join(' ')})`, { providerCode: code ?? name })
}
