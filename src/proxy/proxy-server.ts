import type http from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { Metrics } from '../admin/metrics.ts'
import type { CompiledCredential } from '../config/load.ts'
import type { Forwarder } from './forward.ts'
import { normalizeHost, splitHostPort } from '../binding/host-pattern.ts'
import type { AuditSink } from '../observe/audit.ts'
import { PROXY_AUTH_CHALLENGE, type ProxyAuth } from '../policy/proxy-auth.ts'
import { normalizeRequestPath } from '../policy/request-path.ts'
import { DUPLICATE_HOST, hasDuplicateHost, isRefusal, rawPathOf, type Refusal, type Resolution, type TargetResolver } from './resolve-target.ts'
import { auditRefusal, createEdgeServer, refuse, type Edge, type RefusedDestination } from './edge.ts'
import { sendSocketError } from './respond.ts'
import { applyServerLimits, DEFAULT_SERVER_LIMITS, serverTimeoutOptions, type ServerLimits } from './server-limits.ts'
import { openTunnel } from './tunnel.ts'
import { passthroughLookup } from './upstream.ts'
import type { LookupFunction } from './dns-lookup.ts'

/** TLS interception plugs in here: it owns the socket after a CONNECT to a credentialed host. */
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
  /** Name resolution for blind tunnels (default: the shared resolver). */
  lookup?: LookupFunction | undefined
  interceptor?: ConnectInterceptor | undefined
  /** Connection cap and timeouts (`limits` in the config). */
  limits?: ServerLimits
  /** The proxy client token: every request needs it (`required`), or only those to credentials with `requireProxyAuth`. */
  proxyAuth?: { readonly check: ProxyAuth; readonly required: boolean } | undefined
  audit?: AuditSink | undefined
}

const CHALLENGE: Readonly<Record<string, string>> = Object.freeze({ 'proxy-authenticate': PROXY_AUTH_CHALLENGE })
const NO_TOKEN = 'the proxy needs a client token: send Proxy-Authorization (a proxy URL http://user:TOKEN@host:port, or Bearer TOKEN)'

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
  const tunnelLookup = passthroughLookup(o.lookup, o.allowLinkLocal)
  const edge: Edge = { logger: o.logger, metrics: o.metrics, mode: undefined, audit: o.audit }
  const auth = o.proxyAuth
  const server = createEdgeServer(edge, serverTimeoutOptions(limits), (req: IncomingMessage, res: ServerResponse) => {
    const mode = req.url?.startsWith('/') ? 'route' : 'forward'
    // Checked before anything about the request is answered, so a client without the token learns nothing.
    const authorized = auth === undefined || !auth.required || auth.check.accepts(req.headers['proxy-authorization'])
    const target = o.resolver.resolve(req)
    if (!authorized || (!isRefusal(target) && target.credential?.requireProxyAuth === true && !auth?.check.accepts(req.headers['proxy-authorization']))) {
      refuse(edge, res, req, mode, 'proxy_auth_required', NO_TOKEN, describeTarget(req.url), CHALLENGE)
      auditRefusal(edge, 'proxy_auth_required', req.method ?? 'GET', destinationOf(req.url, target), req.headers.traceparent)
      return
    }
    if (isRefusal(target)) {
      refuse(edge, res, req, mode, target.code, target.message, describeTarget(req.url))
      auditRefusal(edge, target.code, req.method ?? 'GET', destinationOf(req.url, target), req.headers.traceparent)
      return
    }
    o.forwarder.handle(req, res, target)
  })

  applyServerLimits(server, limits, () => o.metrics.countDenial('too_many_connections'))

  const open = new Set<Duplex>()
  tunnels.set(server, open)
  server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy())
    const d = hasDuplicateHost(req.rawHeaders) ? DUPLICATE_HOST : o.resolver.connect(req.url ?? '')
    // The token is checked on the CONNECT; requests inside the tunnel are that client's.
    const authorized = auth === undefined || auth.check.accepts(req.headers['proxy-authorization'])
    const credential = !isRefusal(d) && d.kind === 'intercept' ? d.credential : undefined
    const refusal: Refusal | undefined = !authorized && (auth.required || credential?.requireProxyAuth === true)
      ? { refused: true, code: 'proxy_auth_required', message: NO_TOKEN }
      : isRefusal(d) ? d : undefined
    if (refusal !== undefined) {
      o.metrics.countDenial(refusal.code)
      o.metrics.countRequest('connect', 'refused')
      // WARN: a refused tunnel is most often a setup mistake, and the message says the fix.
      o.logger.warn({ event: 'denied', method: 'CONNECT', code: refusal.code, target: describeTarget(req.url) }, refusal.message)
      const hp = splitHostPort(req.url ?? '')
      auditRefusal(edge, refusal.code, 'CONNECT', { host: hp ? (normalizeHost(hp.host) ?? hp.host) : '', port: hp?.port ?? 0, path: '', credential }, req.headers.traceparent)
      sendSocketError(socket, refusal.code, refusal.message, refusal.code === 'proxy_auth_required' ? CHALLENGE : undefined)
      return
    }
    if (isRefusal(d)) return
    if (d.kind === 'intercept') {
      if (!o.interceptor) {
        sendSocketError(socket, 'intercept_disabled', 'TLS interception is not available in this process')
        return
      }
      o.metrics.countRequest('connect', 'intercepted')
      o.interceptor.handle(req, socket, head, d.host, d.port, d.credential)
      return
    }
    o.metrics.countRequest('connect', 'tunnel')
    open.add(socket)
    socket.once('close', () => open.delete(socket))
    void openTunnel(socket, head, d.host, d.port, { connectTimeoutMs: o.connectTimeoutMs, allowLinkLocal: o.allowLinkLocal, logger: o.logger, lookup: tunnelLookup })
  })

  return server
}

/** Where a refused request was going, for its audit record: the resolved target, else what the URI says. */
function destinationOf(url: string | undefined, target: Resolution): RefusedDestination {
  if (!isRefusal(target)) {
    const colon = target.host.lastIndexOf(':')
    return { host: target.host.slice(0, colon), port: Number(target.host.slice(colon + 1)), path: auditPath(target.path), credential: target.credential }
  }
  if (url === undefined || url.startsWith('/')) return { host: '', port: 0, path: '', credential: undefined }
  try {
    const u = new URL(url)
    return { host: normalizeHost(u.hostname) ?? '', port: u.port ? Number(u.port) : 80, path: auditPath(rawPathOf(url)), credential: undefined }
  } catch {
    return { host: '', port: 0, path: '', credential: undefined }
  }
}

/** A path for an audit record: normalised, never the query (nothing when it cannot be normalised). */
function auditPath(raw: string): string {
  const n = normalizeRequestPath(raw)
  return n.ok ? n.path : ''
}

/** A request target for a log line: scheme://host[:port] or the route name, never a query string. */
function describeTarget(url: string | undefined): string {
  if (!url) return ''
  if (url.startsWith('/')) return url.split(/[?#]/)[0]?.slice(0, 128) ?? ''
  const m = /^([a-z][a-z0-9+.-]*:\/\/)?(?:[^@/?#]*@)?([^/?#]*)/i.exec(url)
  return ((m?.[1] ?? '') + (m?.[2] ?? '')).slice(0, 256)
}
