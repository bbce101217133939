import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import type { Metrics } from '../admin/metrics.ts'
import type { CompiledCredential } from '../config/load.ts'
import { ERROR_CODES, type ErrorCode } from '../errors.ts'
import { wellFormedTraceparent, type AuditSink } from '../observe/audit.ts'
import { sendError, sendSocketError } from './respond.ts'

/**
 * Where requests come in: the proxy listener and the HTTP server inside each intercepted
 * tunnel share this edge, so they parse, refuse and report alike. Node's strict parser
 * refuses smuggling (conflicting Content-Length / Transfer-Encoding, bad chunking, obs-fold)
 * before a request reaches us; `clientError` answers those with a stable code.
 */
export interface Edge {
  readonly logger: Logger
  readonly metrics: Metrics
  /** Logged on the edge's own lines; undefined for the proxy listener (its mode depends on the request). */
  readonly mode: 'intercept' | undefined
  /** Where refusals about a destination are recorded (see AUDITED_REFUSALS). */
  readonly audit?: AuditSink | undefined
}

/**
 * Edge refusals that get an audit record: those about who asked or where a request was going.
 * Malformed requests, unknown routes and limits are logged and counted, not audited: they name
 * no destination a credential could have gone to.
 */
const AUDITED_REFUSALS: ReadonlySet<ErrorCode> = new Set(['proxy_auth_required', 'egress_denied', 'link_local_denied', 'intercept_disabled', 'intercept_port_not_allowed'])

/** The request's destination as far as an edge refusal knows it. */
export interface RefusedDestination {
  readonly host: string
  readonly port: number
  /** Path without its query; empty for CONNECT. */
  readonly path: string
  readonly credential: CompiledCredential | undefined
}

/** One audit record for a refusal at the edge (nothing was fetched or sent). */
export function auditRefusal(edge: Edge, code: ErrorCode, method: string, d: RefusedDestination, traceparent: string | string[] | undefined): void {
  if (!AUDITED_REFUSALS.has(code)) return
  // Counted whether or not an audit sink is configured: the metric does not depend on it.
  if (d.credential !== undefined) edge.metrics.countCredentialUse(d.credential.name, 'refused')
  if (edge.audit === undefined) return
  edge.audit.write({
    credential: d.credential?.name,
    provider: d.credential?.provider,
    version: undefined,
    fingerprint: undefined,
    host: d.host,
    port: d.port,
    method,
    path: d.path,
    rule: undefined,
    status: ERROR_CODES[code].status,
    outcome: 'refused',
    code,
    durationMs: 0,
    bytesIn: 0,
    bytesOut: 0,
    traceparent: wellFormedTraceparent(traceparent),
  })
}

/** The parser options of every edge: strict parsing, no Host required (HTTP/1.0 clients), 16 KiB of headers. */
const PARSER_OPTIONS: http.ServerOptions = Object.freeze({ insecureHTTPParser: false, requireHostHeader: false, maxHeaderSize: 16 * 1024 })

/** `timeouts`: the listener's limits (server-limits.ts), on top of the shared parser options. */
export function createEdgeServer(edge: Edge, timeouts: http.ServerOptions, onRequest: (req: IncomingMessage, res: ServerResponse) => void): http.Server {
  const server = http.createServer({ ...timeouts, ...PARSER_OPTIONS }, onRequest)
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => clientError(edge, err, socket))
  return server
}

/** A request refused before it reaches the pipeline: one denial metric, one `denied` log line, a registry error body. */
export function refuse(edge: Edge, res: ServerResponse, req: IncomingMessage, mode: string, code: ErrorCode, message: string, target: string, extra?: Readonly<Record<string, string>>): void {
  edge.metrics.countDenial(code)
  edge.metrics.countRequest(mode, 'refused')
  edge.logger.info({ event: 'denied', mode: edge.mode, method: req.method, code, target }, message)
  req.resume()
  sendError(res, code, message, extra)
}

function clientError(edge: Edge, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    // headersTimeout / requestTimeout (a slowloris client): a 408 it may read, then the socket is cut.
    edge.metrics.countDenial('request_timeout')
    edge.logger.info({ event: 'client_error', mode: edge.mode, code: 'request_timeout' }, 'request not received in time')
    if (!socket.writable) socket.destroy()
    else sendSocketError(socket, 'request_timeout', 'the request was not received in time (limits.headersTimeout)')
    return
  }
  if (!err.code?.startsWith('HPE_')) {
    // A reset, a timeout or a TLS alert, not a malformed request: there is no HTTP answer to give.
    socket.destroy()
    return
  }
  const code = err.code === 'HPE_HEADER_OVERFLOW' ? 'headers_too_large' : 'bad_request'
  edge.metrics.countDenial(code)
  edge.logger.info({ event: 'client_error', mode: edge.mode, code, parserCode: err.code }, 'malformed request refused')
  if (!socket.writable) socket.destroy()
  else sendSocketError(socket, code, code === 'headers_too_large' ? 'request headers are too large' : `malformed request (${err.code})`)
}
