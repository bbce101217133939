import type http from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { Metrics } from '../admin/metrics.ts'
import type { CompiledCredential } from '../config/load.ts'
import type { Forwarder } from './forward.ts'
import { DUPLICATE_HOST, hasDuplicateHost, isRefusal, type TargetResolver } from './resolve-target.ts'
import { createEdgeServer, refuse, type Edge } from './edge.ts'
import { sendSocketError } from './respond.ts'
import { applyServerLimits, DEFAULT_SERVER_LIMITS, serverTimeoutOptions, type ServerLimits } from './server-limits.ts'
import { openTunnel } from './tunnel.ts'

/** TLS interception (issue 4) plugs in here: it owns the socket after a CONNECT to a credentialed host. */
export interface ConnectInterceptor {
  handle(req: IncomingMessage, socket: Duplex, head: Buffer, host: string, port: number, credential: CompiledCredential): void
}

export interface ProxyServerOptions {
  resolver: TargetResolver
  forwarder: Forwarder
  logger: Logger
  metrics: Metrics
  connectTimeoutMs: number
  allowLinkLocal: boolean
  interceptor?: ConnectInterceptor | undefined
  /** Connection cap and timeouts (`limits` in the config). */
  limits?: ServerLimits
}

/** Blind CONNECT tunnels leave the HTTP server's connection tracking; they are ended on shutdown. */
const tunnels = new WeakMap<http.Server, Set<Duplex>>()

/** Destroy every open blind tunnel of a proxy server (intercepted ones drain through the interceptor). */
export function destroyTunnels(server: http.Server): void {
  for (const socket of tunnels.get(server) ?? []) socket.destroy()
}

/**
 * The one proxy listener, on the shared edge: reverse routes (origin-form), the plain
 * forward proxy (absolute-form), and CONNECT.
 */
export function createProxyServer(o: ProxyServerOptions): http.Server {
  const limits = o.limits ?? DEFAULT_SERVER_LIMITS
  const edge: Edge = { logger: o.logger, metrics: o.metrics, mode: undefined }
  const server = createEdgeServer(edge, serverTimeoutOptions(limits), (req: IncomingMessage, res: ServerResponse) => {
    const target = o.resolver.resolve(req)
    if (isRefusal(target)) {
      refuse(edge, res, req, req.url?.startsWith('/') ? 'route' : 'forward', target.code, target.message, describeTarget(req.url))
      return
    }
    o.forwarder.handle(req, res, target)
  })

  applyServerLimits(server, limits, () => o.metrics.denials.inc({ code: 'too_many_connections' }))

  const open = new Set<Duplex>()
  tunnels.set(server, open)
  server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy())
    const d = hasDuplicateHost(req.rawHeaders) ? DUPLICATE_HOST : o.resolver.connect(req.url ?? '')
    if (isRefusal(d)) {
      o.metrics.denials.inc({ code: d.code })
      o.metrics.requests.inc({ mode: 'connect', outcome: 'refused' })
      // WARN: a refused tunnel is most often a setup mistake, and the message says the fix.
      o.logger.warn({ event: 'denied', method: 'CONNECT', code: d.code, target: describeTarget(req.url) }, d.message)
      sendSocketError(socket, d.code, d.message)
      return
    }
    if (d.kind === 'intercept') {
      if (!o.interceptor) {
        sendSocketError(socket, 'intercept_disabled', 'TLS interception is not available in this process')
        return
      }
      o.metrics.requests.inc({ mode: 'connect', outcome: 'intercepted' })
      o.interceptor.handle(req, socket, head, d.host, d.port, d.credential)
      return
    }
    o.metrics.requests.inc({ mode: 'connect', outcome: 'tunnel' })
    open.add(socket)
    socket.once('close', () => open.delete(socket))
    void openTunnel(socket, head, d.host, d.port, { connectTimeoutMs: o.connectTimeoutMs, allowLinkLocal: o.allowLinkLocal, logger: o.logger })
  })

  return server
}

/** A request target for a log line: scheme://host[:port] or the route name, never a query string. */
function describeTarget(url: string | undefined): string {
  if (!url) return ''
  if (url.startsWith('/')) return url.split(/[?#]/)[0]?.slice(0, 128) ?? ''
  const m = /^([a-z][a-z0-9+.-]*:\/\/)?(?:[^@/?#]*@)?([^/?#]*)/i.exec(url)
  return ((m?.[1] ?? '') + (m?.[2] ?? '')).slice(0, 256)
}
