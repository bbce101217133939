import type { IncomingMessage, ServerResponse } from 'node:http'
import { isIP, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { TLSSocket } from 'node:tls'
import type { CompiledCredential } from '../config/load.ts'
import type { Broker } from '../broker.ts'
import type { ErrorCode } from '../errors.ts'
import type { Forwarder } from '../proxy/forward.ts'
import { normalizeHost, sameAuthority } from '../binding/host-pattern.ts'
import type { ConnectInterceptor } from '../proxy/proxy-server.ts'
import { DUPLICATE_HOST, hasDuplicateHost, interceptedTarget, rawPathOf } from '../proxy/resolve-target.ts'
import { createEdgeServer, refuse, type Edge } from '../proxy/edge.ts'
import { sendSocketError } from '../proxy/respond.ts'
import { caScopeFor, loadOrCreateCa, type LoadedCa } from './ca-store.ts'
import { serverTimeoutOptions, startTimeoutSweep } from '../proxy/server-limits.ts'
import { LeafCache } from './leaf-cache.ts'

/** What `createInterceptor` returns: the proxy's CONNECT hook plus its lifecycle and CA. */
export interface Interceptor extends ConnectInterceptor {
  /** The CA certificate clients must trust (PEM). */
  readonly caCertPem: string
  /** Where the CA, its key and the trust bundle live. */
  readonly caFiles: LoadedCa['files']
  /** Where the CA and the bundle were also published (`intercept.publicCaFile`). */
  readonly publicFiles: LoadedCa['publicFiles']
  readonly leaves: LeafCache
  /**
   * Stop taking tunnels; idle tunnels end now, busy ones after their current response
   * (which carries `Connection: close`); whatever is left after `graceMs` is destroyed.
   */
  close(graceMs?: number): Promise<void>
}

/** One intercepted CONNECT: the destination it was opened for fixes the credential for its whole life. */
interface Tunnel {
  readonly host: string
  readonly port: number
  readonly credential: CompiledCredential
  readonly socket: TLSSocket
  inflight: number
}

const ESTABLISHED = 'HTTP/1.1 200 Connection Established\r\n\r\n'
/** Idle time allowed between requests inside a tunnel. */
const TUNNEL_KEEP_ALIVE_MS = 30_000

/**
 * TLS interception for CONNECT to credentialed hosts. The CONNECT socket is answered with
 * 200, then latchkey is the TLS server on it, with a leaf for the CONNECT host issued by its
 * own CA. The client's SNI must name that host (an IP-literal CONNECT may send none); ALPN
 * offers only http/1.1. Decrypted requests are parsed by a non-listening `http.Server`
 * (keep-alive inside the tunnel), must carry a Host equal to the CONNECT host:port, and go
 * through the same Forwarder as the plain proxy: injection, bust-and-replay, logs, metrics.
 *
 * A client that does not trust the CA fails its own handshake: nothing is decrypted, so
 * nothing reaches the upstream, and there is no fallback to a blind tunnel.
 */
export async function createInterceptor(broker: Broker, forwarder: Forwarder): Promise<Interceptor> {
  const { config, logger, metrics } = broker
  const loaded = await loadOrCreateCa({ caDir: config.intercept.caDir, publicCaFile: config.intercept.publicCaFile, leafTtlMs: config.intercept.leafTtl, scope: caScopeFor(Object.values(config.credentials)) })
  for (const w of loaded.warnings) logger.warn({ event: 'intercept_ca_warning' }, w)
  logger.info({ event: 'intercept_ca', created: loaded.created, certFile: loaded.files.certFile, bundleFile: loaded.files.bundleFile, notAfter: loaded.ca.notAfter.toISOString() }, loaded.created ? 'created the interception CA' : 'loaded the interception CA')

  const leaves = new LeafCache({ ca: loaded.ca, leafTtlMs: config.intercept.leafTtl })
  const tunnels = new Map<TLSSocket, Tunnel>()
  const handshakeTimeoutMs = config.upstream.connectTimeout
  let closing = false

  const edge: Edge = { logger, metrics, mode: 'intercept' }

  const inner = createEdgeServer(edge, serverTimeoutOptions(config.limits), (req: IncomingMessage, res: ServerResponse) => {
    const t = tunnels.get(req.socket as TLSSocket)
    if (!t) {
      res.destroy()
      return
    }
    t.inflight++
    res.once('close', () => {
      t.inflight--
      if (closing && t.inflight === 0) t.socket.end()
    })
    if (closing) res.setHeader('connection', 'close')
    const path = requestPath(req, t)
    if (typeof path !== 'string') {
      refuse(edge, res, req, 'intercept', path.code, path.message, `${t.host}:${t.port}`)
      return
    }
    forwarder.handle(req, res, interceptedTarget(t.host, t.port, t.credential, path))
  })
  startTimeoutSweep(inner)
  inner.keepAliveTimeout = TUNNEL_KEEP_ALIVE_MS
  // Inactivity bound on a tunnel socket; longer than the upstream timeouts so the Forwarder answers first.
  inner.timeout = config.upstream.requestTimeout + config.upstream.connectTimeout + 5_000

  async function open(socket: Duplex, head: Buffer, host: string, port: number, credential: CompiledCredential): Promise<void> {
    if (closing) {
      socket.destroy()
      return
    }
    const ipLiteral = isIP(host.startsWith('[') ? host.slice(1, -1) : host) !== 0
    let context
    try {
      // Issued before the 200 so a failure is a clean refusal instead of a broken handshake.
      context = await leaves.get(host)
    } catch (err) {
      logger.error({ event: 'intercept_leaf_failed', host, err }, 'could not issue a leaf certificate')
      sendSocketError(socket, 'upstream_error', `latchkey could not issue a certificate for ${host}`)
      return
    }
    if (socket.destroyed) return
    socket.write(ESTABLISHED)
    if (head.length > 0) socket.unshift(head)

    let sniRefused: string | undefined
    const tlsSocket = new TLSSocket(socket as Socket, {
      isServer: true,
      ALPNProtocols: ['http/1.1'],
      // No SNI: only an IP-literal CONNECT gets a certificate; for a DNS name the
      // handshake has no certificate to offer and fails.
      ...(ipLiteral ? { secureContext: context } : {}),
      SNICallback(servername, cb) {
        if (normalizeHost(servername) === host) return cb(null, context)
        sniRefused = servername.slice(0, 253)
        cb(new Error('SNI does not name the CONNECT host'), undefined)
      },
    })
    const t: Tunnel = { host, port, credential, socket: tlsSocket, inflight: 0 }
    tunnels.set(tlsSocket, t)
    const timer = setTimeout(() => tlsSocket.destroy(), handshakeTimeoutMs)
    timer.unref()
    let secured = false
    tlsSocket.once('secure', () => {
      secured = true
      clearTimeout(timer)
      logger.debug({ event: 'intercept_tunnel', host: `${host}:${port}`, credential: credential.name, alpn: tlsSocket.alpnProtocol || undefined }, 'intercepted tunnel open')
      inner.emit('connection', tlsSocket)
    })
    tlsSocket.on('error', (err: NodeJS.ErrnoException) => {
      if (secured) return // the http server reports and closes
      const reason = refusalReason(err, sniRefused !== undefined, !ipLiteral && !tlsSocket.servername)
      logger.info({ event: 'intercept_refused', code: REFUSAL_CODES[reason], host: `${host}:${port}`, credential: credential.name, reason, sni: sniRefused, tlsCode: err.code }, REFUSAL_MESSAGES[reason])
      tlsSocket.destroy()
    })
    // The proxy's sockets allow half-open connections, and the TLS socket inherits that: a client
    // that gives up during the handshake (it does not trust the CA) must not leave the tunnel open.
    tlsSocket.once('end', () => {
      if (!secured) tlsSocket.destroy()
    })
    tlsSocket.once('close', () => {
      clearTimeout(timer)
      tunnels.delete(tlsSocket)
      socket.destroy()
    })
  }

  return {
    caCertPem: loaded.ca.certPem,
    caFiles: loaded.files,
    publicFiles: loaded.publicFiles,
    leaves,
    handle(_req, socket, head, host, port, credential) {
      open(socket, head, host, port, credential).catch((err: unknown) => {
        logger.error({ event: 'internal_error', err }, 'unexpected error while opening an intercepted tunnel')
        socket.destroy()
      })
    },
    async close(graceMs = 10_000) {
      closing = true
      for (const t of tunnels.values()) if (t.inflight === 0) t.socket.end()
      const deadline = Date.now() + graceMs
      while (tunnels.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
      for (const t of tunnels.values()) t.socket.destroy()
      leaves.clear()
    },
  }
}

type RefusalReason = 'sni_mismatch' | 'sni_missing' | 'no_alpn_protocol' | 'handshake_failed'

/** Each refusal's code in the error registry (the handshake fails: logged, never sent). */
const REFUSAL_CODES: Readonly<Record<RefusalReason, ErrorCode>> = {
  sni_mismatch: 'intercept_sni_mismatch',
  sni_missing: 'intercept_sni_missing',
  no_alpn_protocol: 'intercept_no_alpn_protocol',
  handshake_failed: 'intercept_handshake_failed',
}

const REFUSAL_MESSAGES: Readonly<Record<RefusalReason, string>> = {
  sni_mismatch: 'TLS handshake refused: the client must send SNI naming the CONNECT host',
  sni_missing: 'TLS handshake refused: the client must send SNI naming the CONNECT host',
  no_alpn_protocol: 'TLS handshake refused: the client requires a protocol other than http/1.1 (h2 only?); latchkey speaks http/1.1 inside tunnels',
  handshake_failed: 'TLS handshake inside the tunnel failed (does the client trust the latchkey CA?)',
}

/** Why a handshake inside a tunnel failed, most specific first. */
function refusalReason(err: NodeJS.ErrnoException, sniRefused: boolean, sniMissing: boolean): RefusalReason {
  if (sniRefused) return 'sni_mismatch'
  if (sniMissing) return 'sni_missing'
  // OpenSSL found no protocol in common with the client's ALPN list (it offered h2 only).
  if (err.code === 'ERR_SSL_NO_APPLICATION_PROTOCOL') return 'no_alpn_protocol'
  return 'handshake_failed'
}

/** The path to send upstream, or why the request is refused: its Host (and an absolute URI) must name the tunnel's destination. */
function requestPath(req: IncomingMessage, t: Tunnel): string | { code: ErrorCode; message: string } {
  const mismatch = { code: 'host_mismatch' as const, message: `requests inside a tunnel to ${t.host}:${t.port} must carry Host: ${t.port === 443 ? t.host : `${t.host}:${t.port}`}` }
  if (hasDuplicateHost(req.rawHeaders)) return DUPLICATE_HOST
  if (!sameDestination(req.headers.host, t)) return mismatch
  const url = req.url ?? ''
  if (url.startsWith('/')) return url
  if (/^https:\/\//i.test(url)) {
    if (/^https:\/\/[^/?#]*@/i.test(url)) return { code: 'userinfo_not_allowed', message: 'userinfo (user:pass@) in the request URI is not allowed' }
    let u: URL
    try {
      u = new URL(url)
    } catch {
      return { code: 'bad_request', message: 'the request target is not a valid URI' }
    }
    if (!sameDestination(u.host, t)) return mismatch
    return rawPathOf(url)
  }
  return { code: 'bad_request', message: 'inside a tunnel the request target must be a path (/...) or an https:// URI' }
}

function sameDestination(authority: string | undefined, t: Tunnel): boolean {
  if (authority === undefined) return false
  return sameAuthority(authority, t.host, t.port, 443)
}
