import { createHash, timingSafeEqual } from 'node:crypto'

/**
 * The proxy client token check. A client presents the token in `Proxy-Authorization`, as
 * `Bearer <token>` or `Basic base64(<any user>:<token>)` (what curl `-U`/`--proxy-user`,
 * Python's proxy URLs with userinfo and Node proxy agents send). Schemes are case-insensitive
 * (RFC 9110 §11.1). Both sides are hashed before the constant-time compare, so neither the
 * token's length nor a prefix leaks through timing.
 */
export class ProxyAuth {
  readonly #digest: Buffer

  constructor(token: string) {
    this.#digest = sha256(token)
  }

  /** Does this `Proxy-Authorization` header value carry the token? */
  accepts(header: string | string[] | undefined): boolean {
    if (typeof header !== 'string') return false
    const presented = presentedToken(header)
    // Compare even when nothing usable was presented, so a malformed header costs the same.
    const ok = timingSafeEqual(sha256(presented ?? ''), this.#digest)
    return presented !== undefined && ok
  }
}

/** The `Proxy-Authenticate` challenge sent with a 407. */
export const PROXY_AUTH_CHALLENGE = 'Basic realm="latchkey", Bearer realm="latchkey"'

function presentedToken(header: string): string | undefined {
  const m = /^\s*([A-Za-z]+)\s+(\S+)\s*$/.exec(header)
  if (!m) return undefined
  const scheme = m[1]!.toLowerCase()
  if (scheme === 'bearer') return m[2]
  if (scheme !== 'basic') return undefined
  const decoded = Buffer.from(m[2]!, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  return colon === -1 ? undefined : decoded.slice(colon + 1)
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest()
}
