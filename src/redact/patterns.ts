/**
 * Pattern-based redaction: the second layer, for secrets the scrubber cannot know
 * (a provider's own session token, a key pasted into a URL, a response body echoed in an
 * SDK error). Every rule is compiled once at module load; a line that matches none costs
 * one scan of one combined RegExp.
 *
 * Rules are written against the text of a JSON log line: a value inside a JSON string has
 * its quotes escaped as `\"`, and a JSON document embedded in a JSON string (a response
 * body) has them escaped twice as `\\\"`.
 */

const REDACTED = '[REDACTED]'

interface Rule {
  /** Names the category (for tests and docs). */
  readonly name: string
  /** Pattern source without flags; case-insensitive parts use `(?i:...)`. */
  readonly source: string
  /** Replacement string (`$1` etc.) applied with the rule's own global RegExp. */
  readonly replacement: string
}

/**
 * JSON keys (and query / form parameter names) whose values are secret. Case-insensitive,
 * with `_` / `-` optional so `clientSecret`, `client_secret` and `client-secret` all match.
 * Exact names only: `credential` (a credential's NAME in our own logs) and `tokenType` are not secrets.
 */
const SECRET_KEYS = [
  'password', 'passwd', 'pwd', 'passphrase', 'secret', 'token',
  'api[_-]?key', 'x-api-key', 'access[_-]?token', 'refresh[_-]?token', 'id[_-]?token', 'session[_-]?token',
  'client[_-]?secret', 'private[_-]?key', 'secret[_-]?access[_-]?key', 'aws[_-]?secret[_-]?access[_-]?key', 'aws[_-]?session[_-]?token',
  'authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-vault-token', 'x-amz-security-token',
].join('|')

/** Header names whose value is a credential, as they appear in a raw `Name: value` header dump. */
const SECRET_HEADER_LINES = 'authorization|proxy-authorization|x-api-key|x-vault-token|x-amz-security-token|cookie|set-cookie'

/** Characters of a JSON string (plain JSON line). */
const JSON_CHARS = String.raw`(?:[^"\\]|\\.)*`
/** Characters of a JSON string inside a JSON string: inner escapes are `\\\"`, `\\\\`, `\\n`. */
const JSON_IN_JSON_CHARS = String.raw`(?:[^"\\]|\\\\\\["\\]|\\\\[^"\\]|\\[^"\\])*`

/** RFC 6750 token68 characters (Bearer credentials). */
const TOKEN68 = String.raw`[A-Za-z0-9._~+/-]`

const RULES: readonly Rule[] = [
  {
    name: 'pem-private-key',
    // A block cut short (no END line) is redacted to the end of the JSON string.
    source: String.raw`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----|[^"]*)`,
    replacement: REDACTED,
  },
  {
    name: 'jwt',
    source: String.raw`\beyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*`,
    replacement: REDACTED,
  },
  {
    name: 'bearer',
    // A token needs a digit or symbol, or 20+ letters: "a bearer token was refused" stays readable.
    source: String.raw`\b((?i:bearer)\s+)(?:(?=[A-Za-z]*[0-9._~+/-])${TOKEN68}{4,}|[A-Za-z]{20,})=*`,
    replacement: `$1${REDACTED}`,
  },
  {
    name: 'basic',
    // base64 of user:pass: a multiple of 4 long, or containing a digit, `+`, `/` or `=`.
    source: String.raw`\b((?i:basic)\s+)(?:(?:[A-Za-z0-9+/]{4}){2,}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?|(?=[A-Za-z]*[0-9+/=])[A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])`,
    replacement: `$1${REDACTED}`,
  },
  {
    name: 'url-userinfo',
    // Anchored on the literal `://` (a fast search) rather than on the scheme.
    source: String.raw`(://)[^\s/?#"'<>\\@]+(?:@[^\s/?#"'<>\\@]+)*@`,
    replacement: `$1${REDACTED}@`,
  },
  {
    name: 'json-key',
    source: String.raw`("(?i:${SECRET_KEYS})"\s*:\s*")${JSON_CHARS}"`,
    replacement: `$1${REDACTED}"`,
  },
  {
    name: 'json-key-in-json-string',
    source: String.raw`(\\"(?i:${SECRET_KEYS})\\"\s*:\s*\\")${JSON_IN_JSON_CHARS}\\"`,
    replacement: `$1${REDACTED}\\"`,
  },
  {
    name: 'query-parameter',
    // Anchored on `=` (a fast search); the name is checked behind it.
    source: String.raw`=(?<=(?:^|[?&;\s"])(?i:${SECRET_KEYS})=)[^&#\s"\\;,]+`,
    replacement: `=${REDACTED}`,
  },
  {
    name: 'header-line',
    // `Name: value` after a separator or an escaped line break, anchored on the `:`. The value
    // runs to the next (escaped) line break or the end of the JSON string, through escaped
    // quotes (`Digest a=\"x\"`).
    source: String.raw`:(?<=(?:^|[^A-Za-z0-9-]|\\[nr])(?i:${SECRET_HEADER_LINES})\s*:)([ \t]*)(?:[^"\\\r\n]|\\[^rn])+`,
    replacement: `:$1${REDACTED}`,
  },
  {
    name: 'aws-access-key-id',
    source: String.raw`\b(?:AKIA|ASIA)[A-Z0-9]{16}\b`,
    replacement: REDACTED,
  },
  {
    name: 'aws-secret-access-key',
    // INI / env / YAML forms (`aws_secret_access_key = ...`); JSON forms are caught by json-key.
    source: String.raw`((?i:aws_secret_access_key)\\?"?\s*[:=]\s*\\?"?)[A-Za-z0-9/+=]{16,}`,
    replacement: `$1${REDACTED}`,
  },
  {
    name: 'vault-token',
    source: String.raw`((?i:x-vault-token)\\?"?\s*[:=]\s*\\?"?)[^\s"\\,;]+|\bhv[sbr]\.[A-Za-z0-9_-]{20,}`,
    replacement: `$1${REDACTED}`,
  },
  {
    name: 'known-token-shapes',
    // GitHub, Slack, Google API key, Google OAuth access token, Stripe.
    source: String.raw`\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|ya29\.[0-9A-Za-z_-]{20,}|[sr]k_(?:live|test)_[0-9A-Za-z]{16,})`,
    replacement: REDACTED,
  },
]

/** The rule names, in the order they are applied (for docs and tests). */
export const PATTERN_NAMES: readonly string[] = RULES.map((r) => r.name)

const COMPILED: ReadonlyArray<{ re: RegExp; replacement: string }> = RULES.map((r) => ({ re: new RegExp(r.source, 'g'), replacement: r.replacement }))

/** All rules in one alternation: the common case (nothing to redact) is one scan. */
const ANY = new RegExp(RULES.map((r) => `(?:${r.source})`).join('|'))

/**
 * Redact Bearer/Basic credentials, JWTs, URL userinfo, values of secret-named JSON keys and
 * query parameters, credential header lines, AWS access key ids and secret keys, Vault
 * tokens, PEM private key blocks and a few well-known token shapes.
 */
export function scrubPatterns(text: string): string {
  if (!ANY.test(text)) return text
  let out = text
  for (const { re, replacement } of COMPILED) {
    re.lastIndex = 0
    out = out.replace(re, replacement)
  }
  return out
}
