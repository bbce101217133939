/**
 * The one normalisation of a request path that method/path rules match against. The
 * normalised path is also what latchkey sends upstream, so what was matched and what the
 * upstream receives are the same bytes (proxies that matched one form and sent another have
 * had bypasses: query strings, `%2F`, `#`, dot-segments).
 *
 * 1. The query (from the first `?`) is set aside, a fragment (from `#`) dropped: neither is matched.
 * 2. Percent-encodings are checked (`%` + two hex digits, else refused); an encoded unreserved
 *    character (RFC 3986: ALPHA DIGIT - . _ ~) is decoded, every other encoding is kept with
 *    upper-case hex. `%2F` and `%5C` therefore stay encoded and are never a segment separator.
 * 3. A character outside RFC 3986's path characters (space, `"`, `\`, bytes over 0x7E, ...) is
 *    percent-encoded as the byte it stands for.
 * 4. Dot-segments (`.`, `..`, also when they were written `%2E`) are resolved; one that climbs
 *    above the root is refused. Empty segments (`//`) are kept: `/a//b` is not `/a/b`.
 * Matching is case-sensitive.
 */

export type PathResult =
  | { readonly ok: true; readonly path: string; readonly query: string }
  | { readonly ok: false; readonly reason: string }

const HEX = '0123456789ABCDEF'

function isUnreserved(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e
}

/** pchar minus pct-encoded, plus `/`: unreserved, sub-delims, `:` and `@`. */
function isPathChar(c: number): boolean {
  if (isUnreserved(c)) return true
  switch (c) {
    case 0x21: case 0x24: case 0x26: case 0x27: case 0x28: case 0x29: case 0x2a: case 0x2b: case 0x2c: case 0x3b: case 0x3d: // !$&'()*+,;=
    case 0x3a: case 0x40: case 0x2f: // : @ /
      return true
    default:
      return false
  }
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  if (c >= 0x41 && c <= 0x46) return c - 0x37
  if (c >= 0x61 && c <= 0x66) return c - 0x57
  return -1
}

function encodeByte(b: number): string {
  return '%' + HEX[b >> 4] + HEX[b & 15]
}

/**
 * Normalise the path of a request-target as received (`req.url` for origin-form, or the part of
 * an absolute-form target after its authority). Never use WHATWG `URL.pathname` as input: it
 * resolves dot-segments and re-encodes on its own terms, so the matched path would not be the
 * one sent.
 */
export function normalizeRequestPath(target: string): PathResult {
  const hash = target.indexOf('#')
  const withoutFragment = hash === -1 ? target : target.slice(0, hash)
  const q = withoutFragment.indexOf('?')
  const rawPath = q === -1 ? withoutFragment : withoutFragment.slice(0, q)
  const query = q === -1 ? '' : withoutFragment.slice(q)
  if (rawPath === '') return { ok: true, path: '/', query }
  if (rawPath.charCodeAt(0) !== 0x2f) return { ok: false, reason: 'the path does not start with /' }

  let out = ''
  for (let i = 0; i < rawPath.length; i++) {
    const c = rawPath.charCodeAt(i)
    if (c === 0x25) {
      const h = hexValue(rawPath.charCodeAt(i + 1))
      const l = hexValue(rawPath.charCodeAt(i + 2))
      if (h < 0 || l < 0) return { ok: false, reason: 'the path has a % not followed by two hex digits' }
      const b = (h << 4) | l
      out += isUnreserved(b) ? String.fromCharCode(b) : encodeByte(b)
      i += 2
    } else if (isPathChar(c)) {
      out += rawPath[i]
    } else if (c > 0xff) {
      // Node hands request-line bytes over as latin1, so anything above 0xFF did not come off the wire.
      return { ok: false, reason: 'the path holds a character that is not a byte' }
    } else {
      out += encodeByte(c)
    }
  }

  const segments = out.split('/')
  // segments[0] is the empty string before the leading '/'.
  const kept: string[] = []
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!
    const last = i === segments.length - 1
    if (s === '.') {
      if (last) kept.push('')
    } else if (s === '..') {
      if (kept.length === 0) return { ok: false, reason: 'the path climbs above the root with ..' }
      kept.pop()
      if (last) kept.push('')
    } else {
      kept.push(s)
    }
  }
  return { ok: true, path: '/' + kept.join('/'), query }
}
