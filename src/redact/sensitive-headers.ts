/**
 * Header names whose values are credentials, and the pino `redact` paths that censor
 * them wherever a `headers` object is logged. Compiled once per logger.
 */

/** Always redacted; a credential's own injected header is added by the caller. */
export const DEFAULT_SENSITIVE_HEADERS: readonly string[] = [
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-api-key',
  'x-vault-token',
  'x-amz-security-token',
]

/** RFC 9110 token: anything else cannot be a header name (and could not be quoted safely in a path). */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** `x-api-key` -> `X-Api-Key`: the casing most clients and SDKs use for the header objects they log. */
function titleCase(name: string): string {
  return name.replace(/(^|-)([a-z])/g, (_m, sep: string, c: string) => sep + c.toUpperCase())
}

/**
 * Redact paths for each header name (lowercased, plus its Title-Case spelling) in a
 * top-level `headers` object and in `headers` one or two levels down (`req.headers`,
 * `res.headers`, `request.headers`, `response.headers`, `err.config.headers`, ...).
 * Names that are not valid header tokens are ignored.
 */
export function headerRedactPaths(extra: readonly string[] = []): string[] {
  const names = new Set<string>()
  for (const raw of [...DEFAULT_SENSITIVE_HEADERS, ...extra]) {
    const lower = raw.toLowerCase()
    if (!TOKEN.test(lower)) continue
    names.add(lower)
    names.add(titleCase(lower))
  }
  const paths: string[] = []
  for (const name of names) {
    const prop = `headers["${name}"]`
    paths.push(prop, `*.${prop}`, `*.*.${prop}`)
  }
  return paths
}
