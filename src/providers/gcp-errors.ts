import { ProviderError } from '../errors.ts'

/**
 * Map what the Secret Manager client (google-gax over gRPC) rejects with to a
 * `ProviderError`. A `GoogleError` carries the gRPC `code`, `details` and metadata; only
 * the code (as its name) is kept in `providerCode`, with a fixed category word for
 * FAILED_PRECONDITION (disabled / destroyed); no `cause`.
 */

const NAMES: Readonly<Record<number, string>> = {
  1: 'CANCELLED',
  2: 'UNKNOWN',
  3: 'INVALID_ARGUMENT',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  6: 'ALREADY_EXISTS',
  7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED',
  9: 'FAILED_PRECONDITION',
  10: 'ABORTED',
  11: 'OUT_OF_RANGE',
  12: 'UNIMPLEMENTED',
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
  15: 'DATA_LOSS',
  16: 'UNAUTHENTICATED',
}

/** grpc-js's wording when the call credentials (the token fetch) failed before the call. */
const PLUGIN_FAILURE = /Getting metadata from plugin failed/i

/** `what` names the thing (`secret projects/p/secrets/s/versions/latest`), `where` the provider; neither is secret. */
export function mapGcpError(err: unknown, what: string, where: string, signal?: AbortSignal): ProviderError {
  if (err instanceof ProviderError) return err
  const e = err as { code?: unknown; details?: unknown; message?: unknown; name?: unknown }
  const code = typeof e?.code === 'number' ? e.code : undefined
  const text = typeof e?.details === 'string' ? e.details : typeof e?.message === 'string' ? e.message : ''
  if (signal?.aborted || code === 1 || e?.name === 'AbortError') {
    return new ProviderError('provider_timeout', `${where}: ${what}: Secret Manager did not answer in time`, { providerCode: code === undefined ? 'ABORTED' : NAMES[code] })
  }
  if (code === undefined) {
    // Not a gRPC status: the auth library failed before any call (no credentials file, ADC not found, token endpoint).
    const errCode = typeof (e as { code?: unknown })?.code === 'string' ? ((e as { code: string }).code) : undefined
    const safe = errCode && /^[A-Z0-9_]{2,64}$/.test(errCode) ? errCode : undefined
    return new ProviderError('provider_auth_failed', `${where}: ${what}: could not get Google credentials (Application Default Credentials or credentialsFile)`, {
      providerCode: safe ?? (typeof e?.name === 'string' ? e.name : 'Error'),
      retryable: false,
    })
  }
  const providerCode = NAMES[code] ?? `gRPC ${code}`
  if (PLUGIN_FAILURE.test(text)) {
    return new ProviderError('provider_auth_failed', `${where}: ${what}: could not get an access token (credentials or token endpoint)`, { providerCode: `${providerCode} token`, retryable: true })
  }
  switch (code) {
    case 5:
      return new ProviderError('secret_not_found', `${where}: ${what} does not exist (or has no versions)`, { providerCode })
    case 7:
      return new ProviderError('access_denied', `${where}: ${what}: permission secretmanager.versions.access denied (grant roles/secretmanager.secretAccessor on the secret)`, { providerCode })
    case 16:
      return new ProviderError('provider_auth_failed', `${where}: ${what}: Secret Manager rejected the credentials`, { providerCode })
    case 9: {
      const state = /DESTROYED/.test(text) ? 'destroyed' : /DISABLED/.test(text) ? 'disabled' : 'not accessible'
      return new ProviderError('access_denied', `${where}: ${what} is ${state} (Secret Manager never falls back to an older version)`, { providerCode: `${providerCode} ${state}` })
    }
    case 8:
      return new ProviderError('throttled', `${where}: ${what}: Secret Manager quota exhausted`, { providerCode })
    case 4:
      return new ProviderError('provider_timeout', `${where}: ${what}: Secret Manager did not answer in time`, { providerCode })
    case 14:
    case 13:
    case 10:
    case 2:
      return new ProviderError('provider_unavailable', `${where}: ${what}: Secret Manager is unavailable (${providerCode})`, { providerCode })
    case 3:
      return new ProviderError('provider_config', `${where}: ${what}: Secret Manager says the request is invalid (check the project and secret id)`, { providerCode, retryable: false })
    default:
      return new ProviderError('provider_unavailable', `${where}: ${what}: Secret Manager failed (${providerCode})`, { providerCode, retryable: false })
  }
}
