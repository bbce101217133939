import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { Metrics } from '../admin/metrics.ts'
import type { CompiledCredential } from '../config/load.ts'
import type { Forwarder } from './forward.ts'
import { DUPLICATE_HOST, hasDuplicateHost, isRefusal, type TargetResolver } from './resolve-target.ts'
import { sendError, sendSocketError } from './respond.ts'
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

/**
 * The one proxy listener: reverse routes (origin-form), the plain forward proxy
 * (absolute-form), and CONNECT. Node's strict parser refuses smuggling (conflicting
 * Content-Length / Transfer-Encoding, bad chunking, obs-fold) before we see a request;
 * `clientError` answers those with a stable code.
 */
/** Blind CONNECT tunnels leave the HTTP server's connection tracking; they are ended on shutdown. */
const tunnels = new WeakMap<http.Server, Set<Duplex>>()

/** Destroy every open blind tunnel of a proxy server (intercepted ones drain through the interceptor). */
export function destroyTunnels(server: http.Server): void {
  for (const socket of tunnels.get(server) ?? []) socket.destroy()
}

export function createProxyServer(o: ProxyServerOptions): http.Server {
  const limits = o.limits ?? DEFAULT_SERVER_LIMITS
  const server = http.createServer({ ...serverTimeoutOptions(limits), insecureHTTPParser: false, requireHostHeader: false, maxHeaderSize: 16 * 1024 }, (req: IncomingMessage, res: ServerResponse) => {
    const target = o.resolver.resolve(req)
    if (isRefusal(target)) {
      o.metrics.denials.inc({ code: target.code })
      o.metrics.requests.inc({ mode: req.url?.startsWith('/') ? 'route' : 'forward', outcome: 'refused' })
      o.logger.info({ event: 'denied', method: req.method, code: target.code, target: describeTarget(req.url) }, target.message)
      req.resume()
      sendError(res, target.code, target.message)
      return
    }
    o.forwarder.handle(req, res, target).catch((err: unknown) => {
      o.logger.error({ event: 'internal_error', err }, 'unexpected error while proxying')
      res.destroy()
    })
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
      o.logger.info({ event: 'denied', method: 'CONNECT', code: d.code, target: describeTarget(req.url) }, d.message)
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

  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const code = err.code === 'HPE_HEADER_OVERFLOW' ? 'headers_too_large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'request_timeout' : 'bad_request'
    o.metrics.denials.inc({ code })
    o.logger.info({ event: 'client_error', code, parserCode: err.code }, 'malformed request refused')
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy()
      return
    }
    sendSocketError(socket, code, code === 'headers_too_large' ? 'request headers are too large' : code === 'request_timeout' ? 'the request was not received in time (limits.headersTimeout)' : `malformed request (${err.code ?? 'parse error'})`)
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
