import type { Writable } from 'node:stream'
import { LRUCache } from 'lru-cache'
import type { Agent, Dispatcher } from 'undici'
import type { Config } from '../config/load.ts'
import type { LogLevel } from '../config/schema.ts'
import { compileConfig } from '../config/load.ts'
import { normalizeHost } from '../binding/host-pattern.ts'
import { createBroker, isCompiledConfig, type Broker } from '../broker.ts'
import { createPipeline, RequestExchange } from '../inject/pipeline.ts'
import { headerValue } from '../http/header-list.ts'
import { deferredAuditSink, openConfiguredAudit, wellFormedTraceparent } from '../observe/audit.ts'
import type { ExchangeOptions } from '../observe/request-record.ts'
import { credentialedAgent } from '../proxy/upstream.ts'

export interface LatchkeyInterceptorOptions {
  /**
   * The environment for `${env:NAME}` in the config and for the `env` provider. The library
   * never reads `process.env` itself: pass it (`{ env: process.env }`) if you want that.
   */
  env?: Readonly<Record<string, string | undefined>>
  /** Relative paths in a raw config resolve against this directory (default: the working directory). */
  baseDir?: string
  /** Where JSON log lines go (default: `process.stderr`, so the application's stdout stays its own). */
  logStream?: Writable
  /** Overrides `log.level` of the config. */
  logLevel?: LogLevel
  /**
   * Where requests to bound hosts are sent. Default: latchkey's own undici Agent, which always
   * verifies TLS (even if the application turned verification off) and trusts `upstream.caFile`
   * on top of the public roots. Requests to other hosts always go to the composed dispatcher.
   */
  dispatcher?: Dispatcher
  /** Fetch every prefetched credential now (default true); `ready` resolves when that is done. */
  prefetch?: boolean
}

/** An undici interceptor (`dispatcher.compose(interceptor)`) that adds credentials in-process. */
export interface LatchkeyInterceptor extends Dispatcher.DispatcherComposeInterceptor {
  readonly broker: Broker
  /** Resolves once prefetch has tried every credential. */
  readonly ready: Promise<void>
  /** Close latchkey's own agent and providers, and forget every cached secret. */
  close(): Promise<void>
}

interface Destination {
  readonly host: string
  readonly port: number
  readonly tls: boolean
  /** host:port, for the request's record. */
  readonly hostPort: string
}

/** Distinct origins remembered; origins come from the application, so the memo is bounded. */
const ORIGIN_MEMO_MAX = 1000

/**
 * The in-process variant of the proxy: an undici interceptor that, for requests to a host a
 * credential is bound to (over TLS, or plain http only with `insecure: true`), adds the
 * credential header from the same cache, and on 401/403 busts it and replays once when the
 * body is replayable (none, or a string / Buffer within `upstream.retryBodyLimit`). Requests
 * to any other host pass through untouched. Logs are the broker's redacted pino logger.
 *
 * ```ts
 * import { getGlobalDispatcher, setGlobalDispatcher } from 'undici'
 * const latchkey = createLatchkeyInterceptor(config, { env: process.env })
 * setGlobalDispatcher(getGlobalDispatcher().compose(latchkey))
 * ```
 */
export function createLatchkeyInterceptor(config: unknown, options: LatchkeyInterceptorOptions = {}): LatchkeyInterceptor {
  const env = options.env ?? {}
  let compiled: Config = isCompiledConfig(config) ? config : compileConfig(config, { env, baseDir: options.baseDir ?? '.' })
  if (options.logLevel !== undefined && options.logLevel !== compiled.log.level) {
    compiled = Object.freeze({ ...compiled, log: Object.freeze({ level: options.logLevel }) })
  }
  const broker = createBroker({ config: compiled, env, logStream: options.logStream ?? process.stderr, processMetrics: false })
  const { upstream } = broker.config
  const own = options.dispatcher
    ? undefined
    : credentialedAgent({ ca: upstream.ca, connectTimeoutMs: upstream.connectTimeout, requestTimeoutMs: upstream.requestTimeout })
  const target = options.dispatcher ?? (own as Agent)
  const toBound: Dispatcher.Dispatch = target.dispatch.bind(target)
  // In-process, audit goes only to a file: the application's stdout is its own.
  const auditConfig = broker.config.audit
  const onAuditError = (err: Error): void => broker.logger.error({ event: 'audit_error', err }, 'the audit sink failed; audit records are not written')
  const audit =
    auditConfig.enabled && auditConfig.sink === 'file'
      ? deferredAuditSink(openConfiguredAudit(auditConfig, { scrub: (text) => broker.scrubber.scrub(text), stdout: process.stderr, onError: onAuditError }), onAuditError)
      : undefined
  // The same pipeline as the daemon's, ending in latchkey's agent (or the one given).
  const pipeline = createPipeline(
    { cache: broker.cache, logger: broker.logger, metrics: broker.metrics, audit, retryBodyLimit: upstream.retryBodyLimit, requestTimeoutMs: upstream.requestTimeout },
    toBound,
  )
  const origins = new LRUCache<string, Destination | false>({ max: ORIGIN_MEMO_MAX })
  const destination = (origin: string | URL | undefined): Destination | undefined => {
    if (origin === undefined) return undefined
    const key = typeof origin === 'string' ? origin : origin.origin
    let d = origins.get(key)
    if (d === undefined) {
      d = parseOrigin(key) ?? false
      origins.set(key, d)
    }
    return d || undefined
  }

  const interceptor = (dispatch: Dispatcher.Dispatch): Dispatcher.Dispatch =>
    function latchkeyInterceptor(opts, handler) {
      const d = destination(opts.origin)
      const credential = d ? broker.binding.match(d.host, d.port, d.tls) : undefined
      if (!d || !credential) return dispatch(opts, handler)
      const exchange = new RequestExchange('shim', credential, d.hostPort, undefined, opts.method, opts.path, wellFormedTraceparent(headerValue(opts.headers, 'traceparent')))
      const withExchange: ExchangeOptions = { ...opts, exchange }
      return pipeline(withExchange, handler)
    }

  const ready = options.prefetch === false ? Promise.resolve() : broker.prefetch()
  return Object.assign(interceptor, {
    broker,
    ready,
    async close() {
      await Promise.allSettled([own?.close(), broker.providers.closeAll(), broker.minters.closeAll(), audit?.close()])
      broker.cache.close()
      broker.scrubber.clear()
    },
  })
}

function parseOrigin(origin: string): Destination | undefined {
  let u: URL
  try {
    u = new URL(origin)
  } catch {
    return undefined
  }
  const tls = u.protocol === 'https:'
  if (!tls && u.protocol !== 'http:') return undefined
  const host = normalizeHost(u.hostname)
  if (!host) return undefined
  const port = u.port ? Number(u.port) : tls ? 443 : 80
  return { host, port, tls, hostPort: `${host}:${port}` }
}
