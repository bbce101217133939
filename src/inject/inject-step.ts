import type { IncomingHttpHeaders } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { Dispatcher } from 'undici'
import type { Metrics } from '../admin/metrics.ts'
import type { Resolved, SecretCache } from '../cache/secret-cache.ts'
import { settleWithin } from '../cache/settle-within.ts'
import type { CompiledCredential } from '../config/load.ts'
import { errors } from '../errors.ts'
import type { Exchange, ExchangeOptions } from '../observe/request-record.ts'
import { hasHeader, withHeader } from '../http/header-list.ts'
import { responseScrubForms, scrubbingHandler } from './scrub-response.ts'
import { AWS_KEYS } from './sigv4-step.ts'

type Controller = Dispatcher.DispatchController
type Handler = Dispatcher.DispatchHandler

/** A request's record inside the pipeline: what was observed, plus the credential bound to its destination. */
export interface BoundExchange extends Exchange {
  readonly binding: CompiledCredential | undefined
}

/** What the inject step needs from the broker; built once per pipeline. */
export interface InjectDeps {
  readonly cache: SecretCache
  readonly logger: Logger
  readonly metrics: Metrics
  /** Bodies up to this size (none, a string or bytes) are replayed after a bust; streams never are. */
  readonly retryBodyLimit: number
  /** Bound on waiting for the secret manager: the first fetch and a refetch after 401/403 share it. */
  readonly requestTimeoutMs: number
}

/**
 * The injection step (`dispatch => dispatch`, as undici's own interceptors). For a request
 * whose record names a credential: keep a client-sent header when `overwrite` is false;
 * otherwise wait (bounded) for the secret, send it as the rendered header, and on 401/403
 * bust the secret and — when the value changed and the body is replayable — send once more,
 * the outer handler seeing only the second response. Requests without a credential pass on.
 */
export function injectStep(deps: InjectDeps): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) =>
    function inject(opts, handler) {
      const ex = (opts as ExchangeOptions).exchange as BoundExchange
      const credential = ex.binding
      if (credential === undefined) return dispatch(opts, handler)
      if (!credential.injector.overwrite && hasHeader(opts.headers, credential.injector.headerName)) {
        ex.outcome = 'client_header_kept'
        return dispatch(opts, handler)
      }
      return new InjectedRequest(deps, dispatch, opts, handler, credential, ex).start()
    }
}

/** A body that can be sent twice: none, or a string / bytes within the limit. Streams, iterables and forms are sent once. */
export function replayableBody(body: unknown, limit: number): boolean {
  if (body === undefined || body === null) return true
  if (typeof body === 'string') return Buffer.byteLength(body) <= limit
  if (body instanceof Uint8Array) return body.byteLength <= limit
  return false
}

/**
 * The controller the outer handler holds for the whole request. A replay is a second
 * dispatch with its own controller; this one always acts on the current attempt, so a
 * pause, resume or abort from outside never targets a finished connection.
 */
class StableController implements Controller {
  #target: Controller | undefined
  #paused = false
  #reason: Error | null = null

  set target(c: Controller) {
    this.#target = c
    if (this.#reason) c.abort(this.#reason)
    else if (this.#paused) c.pause()
  }

  get aborted(): boolean {
    return this.#reason !== null || (this.#target?.aborted ?? false)
  }

  get paused(): boolean {
    return this.#paused
  }

  get reason(): Error | null {
    return this.#reason ?? this.#target?.reason ?? null
  }

  get rawHeaders(): Controller['rawHeaders'] {
    return this.#target?.rawHeaders
  }

  get rawTrailers(): Controller['rawTrailers'] {
    return this.#target?.rawTrailers
  }

  abort(reason: Error): void {
    this.#reason ??= reason
    this.#target?.abort(reason)
  }

  pause(): void {
    this.#paused = true
    this.#target?.pause()
  }

  resume(): void {
    this.#paused = false
    this.#target?.resume()
  }
}

/** A 401/403 held back while the credential is busted: delivered unchanged unless a replay replaces it. */
interface Held {
  readonly statusCode: number
  readonly headers: IncomingHttpHeaders
  readonly statusMessage: string | undefined
  readonly chunks: Buffer[]
  ended: boolean
  trailers: IncomingHttpHeaders | undefined
  error: Error | undefined
}

/** One injected request: up to two attempts (the second only after a bust), one outer handler. */
class InjectedRequest {
  readonly #deps: InjectDeps
  readonly #dispatch: Dispatcher.Dispatch
  readonly #opts: Dispatcher.DispatchOptions
  readonly #handler: Handler
  readonly #credential: CompiledCredential
  readonly #ex: BoundExchange
  readonly #proxy = new StableController()
  #finished = false
  #used: Resolved | undefined

  constructor(deps: InjectDeps, dispatch: Dispatcher.Dispatch, opts: Dispatcher.DispatchOptions, handler: Handler, credential: CompiledCredential, ex: BoundExchange) {
    this.#deps = deps
    this.#dispatch = dispatch
    this.#opts = opts
    this.#handler = handler
    this.#credential = credential
    this.#ex = ex
  }

  /** Dispatch now on a cache hit, else once the secret is known. Returns true: the caller never waits for a drain. */
  start(): boolean {
    // Started before the secret is awaited, so the outer handler can abort while it is.
    this.#handler.onRequestStart?.(this.#proxy, {})
    const hit = this.#deps.cache.peek(this.#credential)
    if (hit !== undefined) {
      this.#first(hit)
      return true
    }
    this.#secret().then(
      (resolved) => this.#first(resolved),
      (err: unknown) => this.#fail(err instanceof Error ? err : new Error(String(err))),
    )
    return true
  }

  #first(resolved: Resolved): void {
    if (this.#proxy.aborted) return this.#fail(this.#proxy.reason ?? new Error('aborted'))
    this.#used = resolved
    this.#ex.secret = resolved.secret
    this.#deps.metrics.countInjection(this.#credential.name)
    this.#send(new Attempt(this, 1), resolved.headerValue)
  }

  #send(attempt: Attempt, headerValue: string): void {
    const used = this.#used as Resolved
    // An aws-sigv4 credential is no header: the sigv4 step signs each attempt with these keys.
    const opts = this.#credential.sigv4 ? { ...this.#opts, [AWS_KEYS]: used } : { ...this.#opts, headers: withHeader(this.#opts.headers, this.#credential.injector.headerName, headerValue) }
    try {
      // The injected value never comes back to the client: headers always, bodies when the credential opts in.
      this.#dispatch(opts, scrubbingHandler(attempt, responseScrubForms(this.#credential, used), { bodies: this.#credential.scrubResponses, method: opts.method }))
    } catch (err) {
      this.#fail(err as Error)
    }
  }

  async #secret(): Promise<Resolved> {
    const settled = await settleWithin(this.#deps.cache.get(this.#credential), this.#deps.requestTimeoutMs)
    if (settled.state === 'fulfilled') return settled.value
    if (settled.state === 'rejected') throw settled.reason
    throw errors.secret_unavailable(`credential ${this.#credential.name} is unavailable (provider_timeout)`)
  }

  // Called by the attempts.

  /** The outer handler aborted the request. */
  get aborted(): boolean {
    return this.#proxy.aborted
  }

  requestStart(controller: Controller): void {
    this.#proxy.target = controller
  }

  upgrade(statusCode: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    this.#handler.onRequestUpgrade?.(this.#proxy, statusCode, headers, socket)
  }

  /** True when the attempt must hold this response back and call `decide` later. */
  responseStart(attempt: Attempt, statusCode: number, headers: IncomingHttpHeaders, statusMessage: string | undefined): boolean {
    const refused = statusCode === 401 || statusCode === 403
    if (refused && attempt.n === 1 && this.#used) {
      const bust = this.#deps.cache.bust(this.#credential, this.#used.secret)
      if (replayableBody(this.#opts.body, this.#deps.retryBodyLimit) && !this.#proxy.aborted) {
        // Held (paused, chunks buffered) at most for what is left of the request's budget;
        // then delivered unchanged while the refetch goes on for later requests.
        void settleWithin(bust, this.#deps.requestTimeoutMs - (performance.now() - this.#ex.started)).then((settled) => {
          if (settled.state === 'pending') {
            this.#deps.logger.info(
              { event: 'bust_timeout', mode: this.#ex.mode, credential: this.#credential.name, host: this.#ex.host },
              "the refetch after the upstream's refusal did not finish within requestTimeout; returning the upstream's answer",
            )
          }
          this.#decide(attempt, settled.state === 'fulfilled' ? settled.value : undefined)
        })
        return true
      }
      // Not replayable: the next request gets the new value; this one gets the upstream's answer.
      bust.catch(() => undefined)
    }
    this.#handler.onResponseStart?.(this.#proxy, statusCode, headers, statusMessage)
    return false
  }

  data(chunk: Buffer): void {
    if (!this.#finished) this.#handler.onResponseData?.(this.#proxy, chunk)
  }

  end(trailers: IncomingHttpHeaders): void {
    if (this.#finished) return
    this.#finished = true
    this.#handler.onResponseEnd?.(this.#proxy, trailers)
  }

  error(err: Error): void {
    this.#fail(err)
  }

  #decide(attempt: Attempt, fresh: Resolved | undefined): void {
    const held = attempt.held as Held
    if (this.#finished) return
    if (fresh && !this.#proxy.aborted) {
      attempt.superseded = true
      if (!held.ended && held.error === undefined) attempt.controller?.abort(new Error('superseded by a replay with a refreshed credential'))
      this.#ex.outcome = 'replayed'
      this.#used = fresh
      this.#ex.secret = fresh.secret
      this.#deps.metrics.replays.inc({ credential: this.#credential.name })
      this.#deps.logger.info({ event: 'replay', mode: this.#ex.mode, credential: this.#credential.name, host: this.#ex.host, status: held.statusCode }, 'replaying with the refreshed credential')
      this.#send(new Attempt(this, 2), fresh.headerValue)
      return
    }
    if (this.#proxy.aborted) return this.#fail(this.#proxy.reason ?? new Error('aborted'))
    // No replay: hand over the held response as it came.
    attempt.held = undefined
    this.#handler.onResponseStart?.(this.#proxy, held.statusCode, held.headers, held.statusMessage)
    for (const c of held.chunks) this.data(c)
    if (held.error) return this.error(held.error)
    if (held.ended) return this.end(held.trailers ?? {})
    if (!this.#proxy.paused) attempt.controller?.resume()
  }

  #fail(err: Error): void {
    if (this.#finished) return
    this.#finished = true
    this.#handler.onResponseError?.(this.#proxy, err)
  }
}

/** The handler of one dispatch. A superseded attempt (replaced by a replay) goes silent. */
class Attempt implements Handler {
  readonly n: 1 | 2
  readonly #req: InjectedRequest
  controller: Controller | undefined
  held: Held | undefined
  superseded = false

  constructor(req: InjectedRequest, n: 1 | 2) {
    this.#req = req
    this.n = n
  }

  onRequestStart(controller: Controller): void {
    this.controller = controller
    this.#req.requestStart(controller)
  }

  onRequestUpgrade(_controller: Controller, statusCode: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    this.#req.upgrade(statusCode, headers, socket)
  }

  onResponseStart(controller: Controller, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (this.superseded) return
    if (this.#req.responseStart(this, statusCode, headers, statusMessage)) {
      controller.pause()
      this.held = { statusCode, headers, statusMessage, chunks: [], ended: false, trailers: undefined, error: undefined }
    }
  }

  onResponseData(_controller: Controller, chunk: Buffer): void {
    if (this.superseded) return
    if (this.held) this.held.chunks.push(chunk)
    else this.#req.data(chunk)
  }

  onResponseEnd(_controller: Controller, trailers: IncomingHttpHeaders): void {
    if (this.superseded) return
    if (this.held) {
      this.held.ended = true
      this.held.trailers = trailers
    } else this.#req.end(trailers)
  }

  onResponseError(_controller: Controller, err: Error): void {
    if (this.superseded) return
    // An abort from outside ends the request now; any other error waits for the bust decision.
    if (this.held && this.held.error === undefined && !this.#req.aborted) this.held.error = err
    else this.#req.error(err)
  }
}
