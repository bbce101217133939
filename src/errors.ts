/**
 * One registry of error codes (fastify `lib/errors.js` style). Every code used in an
 * HTTP body, a log line or a CLI message is listed here with its HTTP status and a
 * description; the README's error table is generated from the same facts.
 *
 * An error's message and enumerable fields never hold secret material: messages name
 * credentials, providers and hosts, never values.
 */

export const ERROR_CODES = {
  // Request refusals (proxy listener)
  egress_denied: { status: 403, description: 'The destination host has no credential bound to it and `egress` is `deny`.' },
  intercept_disabled: { status: 403, description: 'CONNECT to a host that a credential is bound to, while TLS interception is off; enable `intercept.enabled` or use the plain forward proxy (`http://` URLs) or a route.' },
  intercept_port_not_allowed: { status: 403, description: 'CONNECT to a credentialed host on a port none of its patterns allows.' },
  link_local_denied: { status: 403, description: 'Passthrough to a link-local / cloud metadata address is refused (`upstream.allowLinkLocal`).' },
  bad_request: { status: 400, description: 'The request could not be parsed or is malformed (includes smuggling attempts such as conflicting Content-Length / Transfer-Encoding, and more than one Host header).' },
  host_mismatch: { status: 400, description: 'The absolute request URI and the Host header name different hosts.' },
  userinfo_not_allowed: { status: 400, description: 'The request URI carries userinfo (`user:pass@host`).' },
  invalid_host: { status: 400, description: 'The destination host is missing or not a valid host name / IP literal.' },
  unsupported_scheme: { status: 400, description: 'The absolute request URI is not `http:`; use CONNECT (HTTPS_PROXY) for `https:` URLs.' },
  too_many_connections: { status: 503, description: 'The proxy listener holds `limits.maxConnections` connections; this one is answered and closed at once. Retry later.' },
  request_timeout: { status: 408, description: 'The client did not send its request headers within `limits.headersTimeout` (or the whole request within `limits.requestTimeout`).' },
  sigv4_unsupported: { status: 400, description: 'An `aws-sigv4` credential cannot sign this request: a body signed chunk by chunk (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`), a presigned URL (`X-Amz-Signature` in the query), or a body latchkey cannot read. The message says what to change on the client.' },
  request_too_large: { status: 413, description: 'An `aws-sigv4` request to a service that needs the body\'s hash (not S3) has a body larger than `inject.maxBodyBytes`.' },
  headers_too_large: { status: 431, description: 'The request headers exceed the size limit.' },
  policy_denied: { status: 403, description: 'No `allow` rule of the credential bound to this host allows the request\'s method and normalised path; it is not forwarded.' },
  proxy_auth_required: { status: 407, description: 'The proxy client token (`proxyAuth`) is required and the request (or its CONNECT) carried no valid `Proxy-Authorization`.' },
  route_not_found: { status: 404, description: 'An origin-form request whose first path segment names no route.' },
  secret_unavailable: { status: 503, description: 'The credential for this host could not be fetched and no usable (stale) value is held.' },
  header_value_invalid: { status: 502, description: 'The rendered credential header would contain CR, LF, NUL, another control character or a character outside Latin-1; it is never sent.' },
  upstream_unreachable: { status: 502, description: 'latchkey could not connect to the upstream.' },
  upstream_tls_error: { status: 502, description: 'TLS to the upstream failed (certificate not trusted or not valid for the bound host name).' },
  upstream_timeout: { status: 504, description: 'The upstream did not answer within `upstream.connectTimeout` / `upstream.requestTimeout`.' },
  upstream_error: { status: 502, description: 'The upstream connection failed while the request was in flight.' },
  client_closed: { status: 499, description: 'The client went away before the response was complete; the upstream request is aborted. Logged only, never sent.' },
  // TLS interception refusals (logged as `intercept_refused`; the handshake fails, nothing is sent)
  intercept_sni_mismatch: { status: 400, description: 'The client\'s TLS SNI inside an intercepted tunnel names another host than the CONNECT.' },
  intercept_sni_missing: { status: 400, description: 'The client sent no TLS SNI inside an intercepted tunnel to a DNS name.' },
  intercept_no_alpn_protocol: { status: 400, description: 'The client offered no ALPN protocol latchkey speaks inside a tunnel (only http/1.1).' },
  intercept_handshake_failed: { status: 400, description: 'The TLS handshake inside an intercepted tunnel failed (usually: the client does not trust the latchkey CA).' },
  // Admin listener
  admin_unauthorized: { status: 401, description: 'Missing or wrong admin bearer token (the cache calls; `/metrics` on an admin listener off loopback).' },
  admin_disabled: { status: 403, description: 'The admin call needs the admin token (the cache calls; `/metrics` on an admin listener off loopback) and none is configured.' },
  not_found: { status: 404, description: 'No such admin endpoint.' },
  method_not_allowed: { status: 405, description: 'The admin endpoint does not accept this method.' },
  unknown_credential: { status: 404, description: 'The admin call names a credential that is not configured.' },
  // Provider failures (logged with the provider's own code; surface to clients as secret_unavailable)
  secret_not_found: { status: 503, description: 'The secret manager says the secret (or version, or field) does not exist.' },
  access_denied: { status: 503, description: 'The secret manager refused access (policy / IAM / RBAC), or the secret is disabled.' },
  provider_auth_failed: { status: 503, description: 'latchkey could not authenticate to the secret manager.' },
  throttled: { status: 503, description: 'The secret manager throttled the request (retried with backoff first).' },
  provider_unavailable: { status: 503, description: 'The secret manager is unreachable or answered 5xx (retried with backoff first).' },
  provider_timeout: { status: 503, description: 'The secret manager did not answer in time.' },
  invalid_secret: { status: 503, description: 'The secret was fetched but is unusable: wrong shape for the injection, missing `field`, failed integrity check.' },
  provider_config: { status: 503, description: 'The provider is misconfigured in a way only visible at run time.' },
  // Start-up / CLI
  config_invalid: { status: 500, description: 'The configuration has one or more problems; each is listed with its path.' },
} as const satisfies Record<string, { status: number; description: string }>

export type ErrorCode = keyof typeof ERROR_CODES

/** Codes a provider may raise; each maps to `secret_unavailable` for clients. */
export type ProviderErrorCode =
  | 'secret_not_found'
  | 'access_denied'
  | 'provider_auth_failed'
  | 'throttled'
  | 'provider_unavailable'
  | 'provider_timeout'
  | 'invalid_secret'
  | 'provider_config'

/** Base class: a stable `code`, an HTTP `status`, and an optional `cause` (never secret). */
export class LatchkeyError extends Error {
  readonly code: ErrorCode
  readonly status: number
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'LatchkeyError'
    this.code = code
    this.status = ERROR_CODES[code].status
  }
}

/**
 * A provider failure. `providerCode` is the secret manager's own code (e.g.
 * `ResourceNotFoundException`, HTTP 403, gRPC `NOT_FOUND`) kept for the log.
 * `retryable` marks transient failures that the shared retry loop may repeat.
 */
export class ProviderError extends LatchkeyError {
  readonly providerCode: string | undefined
  readonly retryable: boolean
  /** Seconds the service asked us to wait (Retry-After), when it said so. */
  readonly retryAfterMs: number | undefined
  constructor(
    code: ProviderErrorCode,
    message: string,
    options?: { cause?: unknown; providerCode?: string | undefined; retryable?: boolean; retryAfterMs?: number | undefined },
  ) {
    super(code, message, options)
    this.name = 'ProviderError'
    this.providerCode = options?.providerCode
    this.retryable = options?.retryable ?? (code === 'throttled' || code === 'provider_unavailable' || code === 'provider_timeout')
    this.retryAfterMs = options?.retryAfterMs
  }
}

/** A configuration problem at one path (`credentials.mlflow.hosts[0]`). */
export interface ConfigIssue {
  path: string
  message: string
}

export class ConfigError extends LatchkeyError {
  readonly issues: readonly ConfigIssue[]
  constructor(issues: readonly ConfigIssue[]) {
    super('config_invalid', `invalid configuration (${issues.length} problem${issues.length === 1 ? '' : 's'}):\n` + issues.map((i) => `  - ${i.path || '(root)'}: ${i.message}`).join('\n'))
    this.name = 'ConfigError'
    this.issues = issues
  }
}

/**
 * One factory per code (fastify's `createError` shape): `errors.secret_unavailable('...')`
 * carries the registry's status; a caller cannot invent a code or pick another status.
 */
export const errors = Object.freeze(
  Object.fromEntries(Object.keys(ERROR_CODES).map((code) => [code, (message: string, options?: { cause?: unknown }) => new LatchkeyError(code as ErrorCode, message, options)])),
) as { readonly [C in ErrorCode]: (message: string, options?: { cause?: unknown }) => LatchkeyError }
