import type { IncomingHttpHeaders } from 'node:http'

/** RFC 9110 §7.6.1 connection-specific fields, plus proxy credentials that are for us, not the upstream. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
])

/**
 * `Expect: 100-continue` is answered by Node's server before the request reaches us (it
 * writes `100 Continue` when no `checkContinue` listener is set), so the client is already
 * sending its body; undici refuses to send `expect` itself. Forwarding it would fail the request.
 */
const REQUEST_ONLY = new Set(['expect'])

/**
 * Request headers for the upstream from the client's raw header list: hop-by-hop fields,
 * the fields named in `Connection`, `Host` (set by us) and `drop` (an injected header
 * being replaced) are removed. Returns a flat [name, value, ...] list as undici accepts.
 */
export function upstreamRequestHeaders(rawHeaders: readonly string[], connection: string | undefined, drop: string | undefined): string[] {
  const named = connection ? new Set(connection.toLowerCase().split(',').map((s) => s.trim())) : undefined
  const out: string[] = []
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || REQUEST_ONLY.has(lower) || lower === drop || named?.has(lower)) continue
    out.push(name, rawHeaders[i + 1] as string)
  }
  return out
}

/** Response headers for the client: hop-by-hop fields and those named in `Connection` removed. */
export function clientResponseHeaders(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const conn = headers.connection
  const named = typeof conn === 'string' ? new Set(conn.toLowerCase().split(',').map((s) => s.trim())) : undefined
  const out: Record<string, string | string[]> = {}
  // for-in: no [key, value] array per header on the response path.
  for (const k in headers) {
    const v = headers[k]
    if (v === undefined || HOP_BY_HOP.has(k) || named?.has(k)) continue
    out[k] = v
  }
  return out
}
