/**
 * Parses a `Retry-After` header value, which HTTP allows as delay-seconds or an HTTP date,
 * into milliseconds from now, clamped to `[0, capMs]` so a hostile or confused server
 * cannot park the retry loop. Anything else (absent, malformed) is `undefined`: the
 * caller's own backoff applies.
 *
 * @param value the raw header value, if the response had one
 * @param capMs the longest wait the provider accepts
 */
export function parseRetryAfter(value: string | undefined, capMs: number): number | undefined {
  if (value === undefined) return undefined
  const s = Number(value)
  if (Number.isFinite(s) && s >= 0) return Math.min(s * 1000, capMs)
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, Math.min(at - Date.now(), capMs))
}
