/**
 * The encodings under which a secret value can turn up in a log line. Shared by the
 * `Scrubber` (which replaces them) and the test helper `assertNoCanary` (which asserts
 * their absence), so the two can never disagree about what "a form of the secret" is.
 */

/** One encoded form of a value; `caseInsensitiveHex` marks percent-encodings (`%2F` = `%2f`). */
export interface SecretForm {
  readonly kind: SecretFormKind
  readonly text: string
  readonly caseInsensitiveHex: boolean
}

export type SecretFormKind =
  | 'raw'
  | 'json-escaped'
  | 'json-escaped-twice'
  | 'base64'
  | 'base64-unpadded'
  | 'base64url'
  | 'base64-embedded'
  | 'base64url-embedded'
  | 'url-encoded'
  | 'form-encoded'
  | 'base64-url-encoded'

/**
 * Base64 of a value that sits inside a larger encoded blob starts at one of three bit
 * offsets; each gives a different run of characters. For each offset, the characters
 * fully determined by the value's own bits are a fixed "core" that appears in the
 * encoding of ANY byte string containing the value. Shorter cores than this are too
 * likely to occur by chance in ordinary text, so they are not produced.
 */
export const EMBEDDED_BASE64_MIN = 8

/** `application/x-www-form-urlencoded`, as HTML forms and OAuth token requests send it. */
function formEncode(value: string): string {
  // URLSearchParams implements the WHATWG form encoding: space -> '+', everything but
  // alphanumerics and `*-._` percent-encoded as UTF-8.
  return new URLSearchParams([['', value]]).toString().slice(1)
}

function jsonEscape(value: string): string {
  return JSON.stringify(value).slice(1, -1)
}

/** The encoding cores of `bytes` at bit offsets 0, 8 and 16 (see `EMBEDDED_BASE64_MIN`). */
export function embeddedBase64Cores(bytes: Uint8Array, encoding: 'base64' | 'base64url'): string[] {
  const cores: string[] = []
  for (let shift = 0; shift < 3; shift++) {
    const padded = Buffer.alloc(shift + bytes.length)
    padded.set(bytes, shift)
    const encoded = padded.toString(encoding)
    // Character k covers bits [6k, 6k+6): keep those entirely inside the value's bits.
    const start = Math.ceil((8 * shift) / 6)
    const end = Math.floor((8 * (shift + bytes.length)) / 6)
    if (end - start >= EMBEDDED_BASE64_MIN) cores.push(encoded.slice(start, end))
  }
  return cores
}

/**
 * Every form of `value` worth hiding: raw, JSON-escaped (once, as inside a JSON log line,
 * and twice, as inside a JSON string embedded in a JSON log line), standard and URL-safe
 * base64 (padded, unpadded, and embedded in a longer base64 blob), `encodeURIComponent`
 * and form encoding, and URL-encoded base64. Duplicates are removed; the raw form comes first.
 */
export function secretForms(value: string): SecretForm[] {
  const bytes = Buffer.from(value, 'utf8')
  const out: SecretForm[] = []
  const seen = new Set<string>()
  const add = (kind: SecretFormKind, text: string, caseInsensitiveHex = false): void => {
    if (text.length === 0 || seen.has(text)) return
    seen.add(text)
    out.push({ kind, text, caseInsensitiveHex })
  }
  add('raw', value)
  const once = jsonEscape(value)
  add('json-escaped', once)
  add('json-escaped-twice', jsonEscape(once))
  const b64 = bytes.toString('base64')
  add('base64', b64)
  add('base64-unpadded', b64.replace(/=+$/, ''))
  add('base64url', bytes.toString('base64url'))
  for (const core of embeddedBase64Cores(bytes, 'base64')) add('base64-embedded', core)
  for (const core of embeddedBase64Cores(bytes, 'base64url')) add('base64url-embedded', core)
  add('url-encoded', encodeURIComponent(value), true)
  add('form-encoded', formEncode(value), true)
  // Base64 carried in a query string or form body has its `+`, `/` and `=` escaped.
  add('base64-url-encoded', encodeURIComponent(b64), true)
  return out
}
