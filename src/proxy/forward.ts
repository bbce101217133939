import type { IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import type { Logger } from 'pino'
import type { Agent, Dispatcher } from 'undici'
import type { Metrics } from '../admin/metrics.ts'
import type { Resolved, SecretCache } from '../cache/secret-cache.ts'
import { settleWithin } from '../cache/settle-within.ts'
import { ERROR_CODES, LatchkeyError } from '../errors.ts'
import { responseScrubForms, scrubbingDispatcher } from '../inject/scrub-response.ts'
import { clientResponseHeaders, upstreamRequestHeaders } from './hop-by-hop.ts'
import { hasBody, prepareBody, type PreparedBody } from './request-body.ts'
import type { Target } from './resolve-target.ts'
import { sendError } from './respond.ts'
import { mapUpstreamError } from './upstream.ts'

export interface ForwarderOptions {
  cache: SecretCache
  agents: { credentialed: Agent; passthrough: Agent }
  logger: Logger
  metrics: Metrics
  retryBodyLimit: number
  /** Bound on waiting for the secret manager on the request path: the first fetch and a refetch after 401/403 share it. */
  requestTimeoutMs: number
}

type Outcome = 'injected' | 'passthrough' | 'replayed' | 'client_header_kept' | 'error'

/**
 * Sends one request upstream: injects the credential, streams bodies both ways, and on
 * 401/403 busts the secret and replays once when the value changed and the body is
 * replayable. Redirects are passed to the client (undici's request never follows them).
 */
export class Forwarder {
  readonly #o: ForwarderOptions

  constructor(o: ForwarderOptions) {
    this.#o = o
  }

  async handle(req: IncomingMessage, res: ServerResponse, target: Target): Promise<void> {
    const started = performance.now()
    const credential = target.credential
    let outcome: Outcome = target.passthrough ? 'passthrough' : 'injected'
    let status = 0
    let errorCode: string | undefined
    // A client that goes away before the upstream answers must not leave the upstream request
    // open until requestTimeout (shutdown would wait for it too): its close aborts the request.
    // Registered before the first await: 'close' fires once, also while a secret is awaited.
    // (An AbortController per request: a cost accepted for that.)
    const abort = new AbortController()
    res.once('close', () => {
      if (!res.writableFinished) abort.abort()
    })
    try {
      let resolved: Resolved | undefined
      let inject = credential !== undefined
      if (credential) {
        if (!credential.injector.overwrite && req.headers[credential.injector.headerName] !== undefined) {
          inject = false
          outcome = 'client_header_kept'
        } else {
          resolved = this.#o.cache.peek(credential) ?? (await this.#secret(credential))
        }
      }
      const headerName = inject && credential ? credential.injector.headerName : undefined
      const base = upstreamRequestHeaders(req.rawHeaders, req.headers.connection, headerName)
      base.push('host', target.hostHeader)
      const body: PreparedBody = inject ? await prepareBody(req, this.#o.retryBodyLimit) : hasBody(req) ? { replayable: false, body: req } : { replayable: true, body: null }
      const agent = target.passthrough ? this.#o.agents.passthrough : this.#o.agents.credentialed
      const send = (used: Resolved | undefined) => {
        const value = used?.headerValue
        const headers = value === undefined || headerName === undefined ? base : [...base, headerName, value]
        const reqBody = body.body === null ? null : Buffer.isBuffer(body.body) ? body.body : body.body === req ? req : Readable.from(body.body)
        // The injected value never comes back to the client: headers always, bodies when the credential opts in.
        const via = used && credential && headerName ? scrubbingDispatcher(agent, responseScrubForms(credential, used), credential.scrubResponses) : agent
        return via.request({ origin: target.origin, path: target.path, method: req.method as Dispatcher.HttpMethod, headers, body: reqBody, signal: abort.signal })
      }
      if (resolved && credential) this.#o.metrics.injections.inc({ credential: credential.name })
      let upstream = await send(resolved)

      if (resolved && credential && (upstream.statusCode === 401 || upstream.statusCode === 403)) {
        const bust = this.#o.cache.bust(credential, resolved.secret)
        // Not replayable: nothing to wait for; the next request gets the refetched value.
        // Replayable: wait at most what is left of the request's budget. The refused response
        // is not read meanwhile (undici pauses it, and a paused body has no body timeout), so
        // on timeout it is still delivered unchanged; the refetch goes on for later requests.
        let fresh: Resolved | undefined
        if (body.replayable) fresh = await this.#within(bust, started, credential.name, target.host)
        else bust.catch(() => undefined)
        if (fresh && !abort.signal.aborted) {
          await upstream.body.dump().catch(() => undefined)
          this.#o.metrics.replays.inc({ credential: credential.name })
          this.#o.logger.info({ event: 'replay', credential: credential.name, host: target.host, status: upstream.statusCode }, 'replaying with the refreshed credential')
          outcome = 'replayed'
          upstream = await send(fresh)
        }
      }
      if (abort.signal.aborted) {
        // The client left while the refetch was awaited: nobody to answer (logged as client_closed).
        upstream.body.destroy()
        throw new Error('client closed')
      }
      status = upstream.statusCode
      res.writeHead(upstream.statusCode, clientResponseHeaders(upstream.headers))
      await pipeTo(upstream.body, res)
    } catch (err) {
      outcome = 'error'
      if (err instanceof LatchkeyError) {
        errorCode = err.code
        status = err.status
        sendError(res, err.code, err.message)
      } else if (res.destroyed) {
        errorCode = 'client_closed'
        res.destroy()
      } else {
        const m = mapUpstreamError(err, target.host)
        errorCode = m.code
        status = res.headersSent ? status : ERROR_CODES[m.code].status
        sendError(res, m.code, m.message)
      }
      if (errorCode !== 'client_closed') this.#o.metrics.denials.inc({ code: errorCode })
    } finally {
      const seconds = (performance.now() - started) / 1000
      this.#o.metrics.requests.inc({ mode: target.mode, outcome })
      this.#o.metrics.requestDuration.observe({ mode: target.mode }, seconds)
      this.#o.logger.info(
        {
          event: 'request',
          mode: target.mode,
          method: req.method,
          credential: credential?.name,
          route: target.route,
          host: target.host,
          path: target.path.split('?')[0],
          status,
          durationMs: Math.round(seconds * 10_000) / 10,
          outcome,
          code: errorCode,
        },
        'request',
      )
    }
  }

  /** The secret, bounded by the request timeout so a slow secret manager cannot stall the proxy. */
  async #secret(credential: NonNullable<Target['credential']>): Promise<Resolved> {
    const settled = await settleWithin(this.#o.cache.get(credential), this.#o.requestTimeoutMs)
    if (settled.state === 'fulfilled') return settled.value
    if (settled.state === 'rejected') throw settled.reason
    throw new LatchkeyError('secret_unavailable', `credential ${credential.name} is unavailable (provider_timeout)`)
  }

  /** The bust's answer if it comes before the request's deadline (`started` + requestTimeout), else undefined. */
  async #within(bust: Promise<Resolved | undefined>, started: number, credential: string, host: string): Promise<Resolved | undefined> {
    const settled = await settleWithin(bust, this.#o.requestTimeoutMs - (performance.now() - started))
    if (settled.state === 'fulfilled') return settled.value
    if (settled.state === 'pending') {
      this.#o.logger.info({ event: 'bust_timeout', credential, host }, "the refetch after the upstream's refusal did not finish within requestTimeout; returning the upstream's answer")
    }
    return undefined
  }
}

/**
 * Stream the upstream body to the client. (stream.pipeline allocates an AbortController and
 * a DOMException per call — measurable on this path.) A client that goes away destroys the
 * upstream body, which returns the connection to undici's pool or closes it.
 */
function pipeTo(src: Readable, dst: ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    if (dst.destroyed) {
      // The client left while a refetch was awaited: its 'close' has been emitted already.
      src.destroy()
      resolve()
      return
    }
    src.once('error', (err) => {
      dst.destroy()
      reject(err)
    })
    dst.once('close', () => {
      if (!dst.writableFinished) src.destroy()
      resolve()
    })
    src.pipe(dst)
  })
}
