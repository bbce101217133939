/**
 * Header names whose values are credentials. Their values are censored in every logged
 * header collection (see `log-object.ts`), whatever the casing of the name.
 */

/** Always censored; the headers each credential injects are added by the caller. */
export const DEFAULT_SENSITIVE_HEADERS: readonly string[] = [
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-api-key',
  'x-vault-token',
  'x-amz-security-token',
]

/** The defaults plus `extra`, lowercased: looked up with `name.toLowerCase()`. */
export function sensitiveHeaderSet(extra: readonly string[] = []): ReadonlySet<string> {
  return new Set([...DEFAULT_SENSITIVE_HEADERS, ...extra].map((n) => n.trim().toLowerCase()).filter((n) => n.length > 0))
}
