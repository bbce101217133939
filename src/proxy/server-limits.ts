/**
 * Connection limits and timeouts of the proxy listener (and of the HTTP server inside an
 * intercepted tunnel), defined once. Node's defaults give a client 60 s to send its headers
 * and no cap on connections, so a slowloris client holds as many sockets as it likes.
 */
import type http from 'node:http'
import type { Socket } from 'node:net'
import { sendSocketError } from './respond.ts'

export interface ServerLimits {
  /** Client connections open at once; the next one is refused with 503 `too_many_connections`. */
  readonly maxConnections: number
  /** Time to receive the request line and headers (answered 408, then closed). */
  readonly headersTimeoutMs: number
  /** Time to receive the whole request, body included (answered 408, then closed); 0 for none. */
  readonly requestTimeoutMs: number
  /** How long an idle keep-alive connection stays open after a response. */
  readonly keepAliveTimeoutMs: number
  /** A connection with no traffic either way for this long is closed (above the upstream timeouts). */
  readonly idleTimeoutMs: number
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = Object.freeze({
  maxConnections: 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 300_000,
  keepAliveTimeoutMs: 5_000,
  idleTimeoutMs: 120_000,
})

/**
 * The `limits` config section with its defaults; the idle timeout, when not set, stays above
 * the upstream's timeouts so a slow upstream is answered (504) before its client is cut.
 */
export function resolveServerLimits(
  raw: { maxConnections?: number | undefined; headersTimeout?: number | undefined; requestTimeout?: number | undefined; keepAliveTimeout?: number | undefined; idleTimeout?: number | undefined } | undefined,
  upstream: { connectTimeout: number; requestTimeout: number },
): ServerLimits {
  const d = DEFAULT_SERVER_LIMITS
  const headersTimeoutMs = raw?.headersTimeout ?? d.headersTimeoutMs
  const requestTimeoutMs = raw?.requestTimeout ?? d.requestTimeoutMs
  return Object.freeze({
    maxConnections: raw?.maxConnections ?? d.maxConnections,
    headersTimeoutMs,
    // Node refuses a request timeout shorter than the header timeout; the whole request includes its headers.
    requestTimeoutMs: requestTimeoutMs === 0 ? 0 : Math.max(requestTimeoutMs, headersTimeoutMs),
    keepAliveTimeoutMs: raw?.keepAliveTimeout ?? d.keepAliveTimeoutMs,
    idleTimeoutMs: raw?.idleTimeout ?? Math.max(d.idleTimeoutMs, upstream.requestTimeout + upstream.connectTimeout + 5_000),
  })
}

/**
 * Options for `http.createServer`. Node enforces the header and request timeouts on a sweep
 * every `connectionsCheckingInterval` (default 30 s): a sweep each quarter of the shortest
 * makes them hold to within a quarter of their value. Not more often: every wake-up of an idle
 * process costs ~0.1 ms of CPU, and a 1 s sweep alone was a third of an idle pod's CPU.
 */
export function serverTimeoutOptions(limits: ServerLimits): http.ServerOptions {
  const shortest = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs || Infinity)
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.max(100, Math.min(5_000, Math.floor(shortest / 4))),
  }
}

/**
 * Node starts the header/request timeout sweep when a server starts listening; a server that
 * is only handed sockets (`emit('connection')`, as inside an intercepted tunnel) never does,
 * so its timeouts would never fire. This starts the same sweep (an unref'd interval).
 */
export function startTimeoutSweep(server: http.Server): void {
  if (!server.listening) server.emit('listening')
}

/**
 * The connection cap and idle timeout. A connection past the cap is answered at once with
 * `503` + `X-Latchkey-Error: too_many_connections` + `Connection: close` and closed before
 * any of its bytes are read (a client that already wrote its request may see a reset
 * instead); `onRefused` counts it. Returns the number of connections open, for tests.
 */
export function applyServerLimits(server: http.Server, limits: ServerLimits, onRefused: () => void): () => number {
  let open = 0
  server.timeout = limits.idleTimeoutMs
  server.prependListener('connection', (socket: Socket) => {
    if (open >= limits.maxConnections) {
      onRefused()
      sendSocketError(socket, 'too_many_connections', `the proxy holds ${limits.maxConnections} connections (limits.maxConnections); retry later`)
      // Closed before the HTTP parser reads anything: a refused connection costs no request.
      socket.once('finish', () => socket.destroy())
      return
    }
    open++
    socket.once('close', () => open--)
  })
  return () => open
}
