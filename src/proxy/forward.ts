import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'
import { errors } from '../errors.ts'
import { RequestExchange } from '../inject/pipeline.ts'
import { wellFormedTraceparent } from '../observe/audit.ts'
import { writeRecord, type ExchangeOptions, type ObserveOptions } from '../observe/request-record.ts'
import { clientResponseHeaders, upstreamRequestHeaders } from './hop-by-hop.ts'
import { hasBody, prepareBody } from './request-body.ts'
import type { Target } from './resolve-target.ts'
import { sendError } from './respond.ts'

type Controller = Dispatcher.DispatchController

export interface ForwarderOptions {
  /** The credential pipeline (see `createPipeline`). */
  pipeline: Dispatcher.Dispatch
  /** Where a request that fails before it reaches the pipeline is recorded. */
  observe: Pick<ObserveOptions, 'logger' | 'metrics' | 'audit'>
  /** Bodies of credentialed requests up to this size are buffered, so they can be replayed. */
  retryBodyLimit: number
}

/** The abort reason when the client goes away: one instance, the abort path allocates nothing. */
const CLIENT_CLOSED = errors.client_closed('the client went away before the response was complete')

/**
 * Incoming request → the pipeline, with a handler that writes the upstream's answer straight
 * into the `ServerResponse`. Redirects are passed to the client (nothing here follows them).
 */
export class Forwarder {
  readonly #o: ForwarderOptions

  constructor(o: ForwarderOptions) {
    this.#o = o
  }

  handle(req: IncomingMessage, res: ServerResponse, target: Target): void {
    const method = req.method ?? 'GET'
    const ex = new RequestExchange(target.mode, target.credential, target.host, target.route, method, target.path, wellFormedTraceparent(req.headers.traceparent))
    const headers = upstreamRequestHeaders(req.rawHeaders, req.headers.connection, undefined)
    headers.push('host', target.hostHeader)
    const writer = new ResponseWriter(res, ex)
    if (!hasBody(req)) return this.#send(target, method, headers, null, ex, writer)
    if (target.credential === undefined) return this.#send(target, method, headers, req, ex, writer)
    prepareBody(req, this.#o.retryBodyLimit).then(
      // undici sends an async iterable as it comes (a body over the limit: what was read, then the rest).
      (prepared) => this.#send(target, method, headers, prepared.body as Dispatcher.DispatchOptions['body'], ex, writer),
      (err: unknown) => {
        // The client's body broke off before anything was sent upstream.
        ex.outcome = 'error'
        ex.failure = errors.client_closed('the client went away while sending its body', { cause: err })
        writeRecord(this.#o.observe, ex)
        res.destroy()
      },
    )
  }

  #send(target: Target, method: string, headers: string[], body: Dispatcher.DispatchOptions['body'], exchange: RequestExchange, writer: ResponseWriter): void {
    const opts: ExchangeOptions = { origin: target.origin, path: target.path, method: method as Dispatcher.HttpMethod, headers, body, exchange }
    this.#o.pipeline(opts, writer)
  }
}

const WRITER = Symbol('latchkey.responseWriter')
type WithWriter = ServerResponse & { [WRITER]?: ResponseWriter }

function onResponseClose(this: WithWriter): void {
  this[WRITER]?.closed()
}

/** The pipeline's outermost handler in the daemon: the upstream's answer (or a registry error) into the client's response. */
class ResponseWriter implements Dispatcher.DispatchHandler {
  readonly #res: ServerResponse
  readonly #ex: RequestExchange
  #controller: Controller | undefined
  #clientGone = false

  constructor(res: ServerResponse, ex: RequestExchange) {
    this.#res = res
    this.#ex = ex
    // A client that goes away before the response is complete must not leave the upstream
    // request open. `close` fires once per response: a plain listener (no `once` wrapper)
    // shared by all, which finds its writer on the response.
    ;(res as WithWriter)[WRITER] = this
    res.on('close', onResponseClose)
  }

  /** The response closed: when before it was complete, the client went away. */
  closed(): void {
    if (this.#res.writableFinished) return
    this.#clientGone = true
    this.#controller?.abort(CLIENT_CLOSED)
  }

  onRequestStart(controller: Controller): void {
    this.#controller = controller
    if (this.#clientGone) controller.abort(CLIENT_CLOSED)
  }

  onResponseStart(_controller: Controller, statusCode: number, headers: IncomingHttpHeaders): void {
    this.#res.writeHead(statusCode, clientResponseHeaders(headers))
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    if (!this.#res.write(chunk)) {
      controller.pause()
      this.#res.once('drain', () => controller.resume())
    }
  }

  onResponseEnd(): void {
    this.#res.end()
  }

  onResponseError(): void {
    // The pipeline's observe step has classified the failure already.
    const f = this.#ex.failure
    if (f === undefined || f.code === 'client_closed') this.#res.destroy()
    else sendError(this.#res, f.code, f.message)
  }
}
