import type { IncomingHttpHeaders } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { Dispatcher } from 'undici'
import type { Metrics } from '../admin/metrics.ts'
import { errors, type LatchkeyError } from '../errors.ts'
import { headerValue } from '../http/header-list.ts'
import type { SecretValue } from '../providers/secret-value.ts'
import type { AuditRecord, AuditSink } from './audit.ts'

type Controller = Dispatcher.DispatchController
type Handler = Dispatcher.DispatchHandler

export type Mode = 'route' | 'forward' | 'intercept' | 'shim'
export type Outcome = 'injected' | 'passthrough' | 'replayed' | 'client_header_kept' | 'refused' | 'error'

/**
 * What one request through the pipeline did, filled in by the steps and written out once
 * (one log line, one set of metrics) when the response ends or fails. Created by the edge
 * (daemon) or the shim, carried on the dispatch options as `exchange`.
 */
export interface Exchange {
  readonly mode: Mode
  /** The bound credential's name, for logs and metric labels. */
  readonly credentialName: string | undefined
  /** Its provider's name (the audit record's `provider`). */
  readonly provider: string | undefined
  /** host:port as matched. */
  readonly host: string
  readonly route: string | undefined
  readonly method: string
  /** Path and query sent upstream (the query is cut before logging); the policy step replaces it with the normalised path. */
  path: string
  /** performance.now() at arrival. */
  readonly started: number
  outcome: Outcome
  status: number
  /** Set once the request failed: always a registry error. */
  failure: LatchkeyError | undefined
  /** Index of the `allow` rule that allowed the request (the credential has rules). */
  rule: number | undefined
  /** The value injected (its version and fingerprint go into the audit record, never the value). */
  secret: SecretValue | undefined
  /** Request body bytes sent upstream (as known before sending). */
  bytesIn: number
  /** Response body bytes passed to the client. */
  bytesOut: number
  /** The client's W3C trace context, when well-formed. */
  readonly traceparent: string | undefined
}

/** Dispatch options inside the pipeline: undici's, plus the request's record. */
export interface ExchangeOptions extends Dispatcher.DispatchOptions {
  readonly exchange: Exchange
}

export interface ObserveOptions {
  readonly logger: Logger
  readonly metrics: Metrics
  /** Turns a transport error into the registry error that is logged and answered. */
  readonly classify: (err: Error, exchange: Exchange) => LatchkeyError
  /** Where the audit record of a credentialed request or a refusal goes; none = no audit. */
  readonly audit?: AuditSink | undefined
}

/**
 * The outermost step: records the status, classifies a failure into a registry error
 * (a client that aborted is `client_closed`), and writes the request's log line and metrics
 * exactly once. The log object is built only when `info` is enabled.
 */
export function observeStep(o: ObserveOptions): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) =>
    function observe(opts, handler) {
      const ex = (opts as ExchangeOptions).exchange
      if (o.audit !== undefined) ex.bytesIn = bodyBytes(opts)
      const r = new ObservedRequest(o, ex, handler)
      try {
        return dispatch(opts, r)
      } catch (err) {
        r.onResponseError(r, err as Error)
        return true
      }
    }
}

/** Handler for the inner steps and controller for the outer handler (so an abort from outside is known as the client's). */
class ObservedRequest implements Handler, Controller {
  readonly #o: ObserveOptions
  readonly #ex: Exchange
  readonly #handler: Handler
  #controller: Controller | undefined
  #clientAborted = false
  #done = false

  constructor(o: ObserveOptions, ex: Exchange, handler: Handler) {
    this.#o = o
    this.#ex = ex
    this.#handler = handler
  }

  // Controller, as seen by the outer handler.
  get aborted(): boolean {
    return this.#controller?.aborted ?? this.#clientAborted
  }
  get paused(): boolean {
    return this.#controller?.paused ?? false
  }
  get reason(): Error | null {
    return this.#controller?.reason ?? null
  }
  get rawHeaders(): Controller['rawHeaders'] {
    return this.#controller?.rawHeaders
  }
  get rawTrailers(): Controller['rawTrailers'] {
    return this.#controller?.rawTrailers
  }
  abort(reason: Error): void {
    this.#clientAborted = true
    this.#controller?.abort(reason)
  }
  pause(): void {
    this.#controller?.pause()
  }
  resume(): void {
    this.#controller?.resume()
  }

  // Handler, as seen by the inner steps.
  onRequestStart(controller: Controller, context: unknown): void {
    this.#controller = controller
    this.#handler.onRequestStart?.(this, context)
  }

  onRequestUpgrade(_controller: Controller, statusCode: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    this.#handler.onRequestUpgrade?.(this, statusCode, headers, socket)
  }

  onResponseStart(_controller: Controller, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (statusCode >= 200) this.#ex.status = statusCode
    this.#handler.onResponseStart?.(this, statusCode, headers, statusMessage)
  }

  onResponseData(_controller: Controller, chunk: Buffer): void {
    this.#ex.bytesOut += chunk.length
    this.#handler.onResponseData?.(this, chunk)
  }

  onResponseEnd(_controller: Controller, trailers: IncomingHttpHeaders): void {
    this.#finish()
    this.#handler.onResponseEnd?.(this, trailers)
  }

  onResponseError(_controller: Controller, err: Error): void {
    const ex = this.#ex
    // A step that refused the request (policy) said so; anything else that fails is an error.
    if (ex.outcome !== 'refused') ex.outcome = 'error'
    ex.failure = this.#clientAborted ? errors.client_closed('the client went away before the response was complete', { cause: err }) : this.#o.classify(err, ex)
    this.#finish()
    this.#handler.onResponseError?.(this, err)
  }

  #finish(): void {
    if (this.#done) return
    this.#done = true
    writeRecord(this.#o, this.#ex)
  }
}

/** The request's metrics, log line and audit record, from its record. */
export function writeRecord(o: Pick<ObserveOptions, 'logger' | 'metrics' | 'audit'>, ex: Exchange): void {
  const seconds = (performance.now() - ex.started) / 1000
  const code = ex.failure?.code
  o.metrics.countRequest(ex.mode, ex.outcome)
  o.metrics.observeDuration(ex.mode, seconds)
  if (code !== undefined && code !== 'client_closed') o.metrics.countDenial(code)
  if (ex.credentialName !== undefined) o.metrics.countCredentialUse(ex.credentialName, ex.outcome)
  if (o.audit !== undefined && (ex.credentialName !== undefined || ex.outcome === 'refused')) o.audit.write(auditRecord(ex, seconds))
  if (!o.logger.isLevelEnabled('info')) return
  const q = ex.path.indexOf('?')
  o.logger.info(
    {
      event: 'request',
      mode: ex.mode,
      method: ex.method,
      credential: ex.credentialName,
      route: ex.route,
      host: ex.host,
      path: q === -1 ? ex.path : ex.path.slice(0, q),
      status: statusOf(ex),
      durationMs: Math.round(seconds * 10_000) / 10,
      outcome: ex.outcome,
      code,
      rule: ex.rule,
    },
    'request',
  )
}

/** The status the client got: the upstream's, or the registry's for a failure before any response (none for a client that left). */
function statusOf(ex: Exchange): number {
  const f = ex.failure
  return f !== undefined && ex.status === 0 && f.code !== 'client_closed' ? f.status : ex.status
}

/** The audit record of one request: identifiers of the value (never the value), the path without its query. */
function auditRecord(ex: Exchange, seconds: number): AuditRecord {
  const q = ex.path.indexOf('?')
  const colon = ex.host.lastIndexOf(':')
  const secret = ex.outcome === 'injected' || ex.outcome === 'replayed' ? ex.secret : undefined
  return {
    credential: ex.credentialName,
    provider: ex.provider,
    version: secret?.version,
    fingerprint: secret?.fingerprint(),
    host: colon === -1 ? ex.host : ex.host.slice(0, colon),
    port: colon === -1 ? 0 : Number(ex.host.slice(colon + 1)),
    method: ex.method,
    path: q === -1 ? ex.path : ex.path.slice(0, q),
    rule: ex.rule,
    status: statusOf(ex),
    outcome: ex.outcome === 'passthrough' ? 'refused' : ex.outcome,
    code: ex.failure?.code,
    durationMs: Math.round(seconds * 10_000) / 10,
    bytesIn: ex.bytesIn,
    bytesOut: ex.bytesOut,
    traceparent: ex.traceparent,
  }
}

/** Request body bytes as far as they are known before sending: a buffered body's length, else Content-Length. */
function bodyBytes(opts: Dispatcher.DispatchOptions): number {
  const b = opts.body
  if (typeof b === 'string') return Buffer.byteLength(b)
  if (b instanceof Uint8Array) return b.byteLength
  if (b === undefined || b === null) return 0
  return Number(headerValue(opts.headers, 'content-length')) || 0
}

/**
 * How a step refuses a request it will not send (policy, signing): the handler is started with
 * a controller that has nothing to stop, then failed with a registry error, which the observe
 * step logs and counts like any other failure.
 */
export function failUnsent(handler: Dispatcher.DispatchHandler, err: Error): void {
  const controller = new UnsentController()
  handler.onRequestStart?.(controller, {})
  handler.onResponseError?.(controller, err)
}

/** The controller of a request that never left. */
class UnsentController implements Dispatcher.DispatchController {
  aborted = false
  paused = false
  reason: Error | null = null
  abort(reason: Error): void {
    this.aborted = true
    this.reason = reason
  }
  pause(): void {
    this.paused = true
  }
  resume(): void {
    this.paused = false
  }
}
