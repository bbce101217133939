import type http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import { createAdminServer } from './admin/admin-server.ts'
import type { Metrics } from './admin/metrics.ts'
import { createBroker, type Broker, type BrokerOptions } from './broker.ts'
import type { SecretCache } from './cache/secret-cache.ts'
import type { Config } from './config/load.ts'
import { createPipeline } from './inject/pipeline.ts'
import { Forwarder } from './proxy/forward.ts'
import { createProxyServer, destroyTunnels, type ConnectInterceptor } from './proxy/proxy-server.ts'
import { TargetResolver } from './proxy/resolve-target.ts'
import { createUpstreamAgents } from './proxy/upstream.ts'
import type { LookupFunction } from './proxy/dns-lookup.ts'
import type { Scrubber } from './redact/scrubber.ts'
import type { Dispatcher } from 'undici'
import type { BoundExchange } from './inject/inject-step.ts'
import type { ExchangeOptions } from './observe/request-record.ts'
import { openConfiguredAudit, type AuditSink } from './observe/audit.ts'
import { ProxyAuth } from './policy/proxy-auth.ts'
import { listenUnix } from './proxy/unix-socket.ts'

/** Kept here too for callers that predate `broker.ts`. */
export { createBroker, isCompiledConfig, type Broker } from './broker.ts'

export interface DaemonOptions extends BrokerOptions {
  /** Wait for prefetch before resolving. */
  waitReady?: boolean
  /** Name resolution for upstreams and blind tunnels (default: the shared c-ares resolver); an embedding or a test may bring its own. */
  lookup?: LookupFunction
}

export interface Daemon {
  readonly config: Config
  /** http://host:port, or unix:/path when `listen` is a Unix socket. */
  readonly proxyUrl: string
  readonly adminUrl: string
  readonly logger: Logger
  readonly metrics: Metrics
  readonly cache: SecretCache
  readonly scrubber: Scrubber
  /** Resolves when every prefetched credential has been tried once. */
  readonly prefetched: Promise<void>
  /** Names of prefetched credentials without a value. */
  notReady(): string[]
  /** Stop accepting, let in-flight requests finish (up to `graceMs`), then close everything. */
  close(graceMs?: number): Promise<void>
}

/** Start the daemon: proxy listener + admin listener + prefetch. */
export async function startDaemon(opts: DaemonOptions, extras: { interceptor?: (broker: Broker, forwarder: Forwarder) => Promise<ConnectInterceptor & { close?(graceMs?: number): Promise<void> }> } = {}): Promise<Daemon> {
  const broker = createBroker(opts)
  const { config, logger, metrics, cache } = broker
  const agents = createUpstreamAgents({
    ca: config.upstream.ca,
    connectTimeoutMs: config.upstream.connectTimeout,
    requestTimeoutMs: config.upstream.requestTimeout,
    allowLinkLocal: config.upstream.allowLinkLocal,
    ...(opts.lookup ? { lookup: opts.lookup } : {}),
  })
  const { credentialed, passthrough } = agents
  let audit: AuditSink | undefined
  try {
    // Opened before any listener, so a bad audit.file fails the start; stdout lines go to the log's stream.
    audit = await openConfiguredAudit(config.audit, {
      scrub: (text) => broker.scrubber.scrub(text),
      stdout: opts.logStream ?? process.stdout,
      onError: (err) => logger.error({ event: 'audit_error', err }, 'the audit sink failed to write a record'),
    })
  } catch (err) {
    await Promise.allSettled([agents.credentialed.close(), agents.passthrough.close(), broker.providers.closeAll(), broker.minters.closeAll()])
    throw err
  }
  // The pipeline ends in the agent for the destination's kind: credentialed, or passthrough (link-local guard).
  const send: Dispatcher.Dispatch = (opts, handler) => ((opts as ExchangeOptions & { exchange: BoundExchange }).exchange.binding ? credentialed : passthrough).dispatch(opts, handler)
  const pipeline = createPipeline({ cache, logger, metrics, audit, retryBodyLimit: config.upstream.retryBodyLimit, requestTimeoutMs: config.upstream.requestTimeout }, send)
  const forwarder = new Forwarder({ pipeline, observe: { logger, metrics, audit }, retryBodyLimit: config.upstream.retryBodyLimit })
  // The CA and X.509 code load only when interception is on.
  const makeInterceptor = extras.interceptor ?? (config.intercept.enabled ? (await import('./intercept/interceptor.ts')).createInterceptor : undefined)
  const interceptor = makeInterceptor ? await makeInterceptor(broker, forwarder) : undefined
  const proxy = createProxyServer({
    resolver: new TargetResolver(config),
    forwarder,
    logger,
    metrics,
    audit,
    proxyAuth: config.proxyAuth === undefined ? undefined : { check: new ProxyAuth(config.proxyAuth.token), required: config.proxyAuth.required },
    connectTimeoutMs: config.upstream.connectTimeout,
    allowLinkLocal: config.upstream.allowLinkLocal,
    lookup: opts.lookup,
    interceptor,
    limits: config.limits,
  })
  const admin = createAdminServer({
    metrics,
    logger,
    token: config.admin.token,
    unready: broker.unready,
    clear(name) {
      if (name === undefined) return cache.clear()
      const c = config.credentials[name]
      return c ? cache.clear(c) : undefined
    },
  })
  let removeSocket: (() => void) | undefined
  try {
    if (config.listen.path !== undefined) removeSocket = await listenUnix(proxy, config.listen.path, config.socket)
    else await listen(proxy, config.listen.host, config.listen.port)
    try {
      await listen(admin, config.admin.listen.host, config.admin.listen.port)
    } catch (err) {
      proxy.close()
      removeSocket?.()
      throw err
    }
  } catch (err) {
    await audit?.close()
    throw err
  }
  // A Unix socket was renamed into place after listening: its address is the configured path.
  const proxyUrl = config.listen.path !== undefined ? `unix:${config.listen.path}` : urlOf(proxy)
  const adminUrl = urlOf(admin)
  logger.info({ event: 'listening', proxy: proxyUrl, admin: adminUrl, credentials: Object.keys(config.credentials), routes: Object.keys(config.routes) }, 'latchkey listening')
  const prefetched = broker.prefetch()
  if (opts.waitReady) await prefetched

  let closing: Promise<void> | undefined
  return {
    config,
    proxyUrl,
    adminUrl,
    logger,
    metrics,
    cache,
    scrubber: broker.scrubber,
    prefetched,
    notReady: broker.notReady,
    close(graceMs = 10_000) {
      closing ??= (async () => {
        logger.info({ event: 'draining' }, 'draining in-flight requests')
        const done = Promise.all([closeServer(proxy), closeServer(admin)])
        // Keep-alive connections become idle as their last response ends: close them as they do.
        const sweep = setInterval(() => {
          proxy.closeIdleConnections()
          admin.closeIdleConnections()
        }, 25)
        sweep.unref()
        proxy.closeIdleConnections()
        admin.closeIdleConnections()
        // Intercepted tunnels drain in parallel (they are not the HTTP server's connections).
        const interceptorClosed = interceptor?.close ? interceptor.close(graceMs) : Promise.resolve()
        const timer = setTimeout(() => {
          proxy.closeAllConnections()
          admin.closeAllConnections()
        }, graceMs)
        timer.unref()
        // Blind tunnels carry no request we could wait for: end them now so close() does not hang on them.
        destroyTunnels(proxy)
        await done
        removeSocket?.()
        await interceptorClosed
        clearTimeout(timer)
        clearInterval(sweep)
        await Promise.allSettled([agents.credentialed.close(), agents.passthrough.close(), broker.providers.closeAll(), broker.minters.closeAll(), audit?.close()])
        cache.close()
        broker.scrubber.clear()
        logger.info({ event: 'stopped' }, 'latchkey stopped')
      })()
      return closing
    },
  }
}

function listen(server: http.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()))
}

function urlOf(server: http.Server): string {
  const a = server.address() as AddressInfo
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address
  return `http://${host}:${a.port}`
}
