import type http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Writable } from 'node:stream'
import type { Logger } from 'pino'
import { createAdminServer } from './admin/admin-server.ts'
import { Metrics } from './admin/metrics.ts'
import { fetchWithRetry, SharedThrottle } from './cache/fetch-with-retry.ts'
import { SecretCache, type Unready } from './cache/secret-cache.ts'
import { compileConfig, type CompiledCredential, type Config } from './config/load.ts'
import { Forwarder } from './proxy/forward.ts'
import { createProxyServer, destroyTunnels, type ConnectInterceptor } from './proxy/proxy-server.ts'
import { TargetResolver } from './proxy/resolve-target.ts'
import { createUpstreamAgents } from './proxy/upstream.ts'
import { ProviderPool } from './providers/provider-pool.ts'
import { createLogger } from './redact/logger.ts'
import { Scrubber } from './redact/scrubber.ts'

export interface DaemonOptions {
  /** A raw config object (as parsed from YAML) or an already compiled `Config`. */
  config: unknown
  env?: Readonly<Record<string, string | undefined>>
  /** Receives every JSON log line (default stdout). */
  logStream?: Writable
  /** Relative paths in a raw config resolve against this directory. */
  baseDir?: string
  /** Do not collect Node process metrics (several daemons in one test process). */
  processMetrics?: boolean
  /** Wait for prefetch before resolving. */
  waitReady?: boolean
}

export interface Daemon {
  readonly config: Config
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

/** The pieces that turn a credential into a header value: shared by the daemon and the in-process shim. */
export interface Broker {
  readonly config: Config
  readonly logger: Logger
  readonly metrics: Metrics
  readonly cache: SecretCache
  readonly scrubber: Scrubber
  readonly resolver: TargetResolver
  readonly providers: ProviderPool
  notReady(): string[]
  /** Prefetched credentials that cannot be served now, with their error codes. */
  unready(): Unready[]
  /** Start keeping every prefetched credential fresh; resolves when each has been tried once. */
  prefetch(): Promise<void>
}

/** Shortest time a value the cache dropped stays scrubbed from logs. */
const RETIRED_SCRUB_MIN_MS = 60_000

/**
 * How long a request holding an expired (within maxStale) value waits for its refresh before
 * the old value is served: a quarter of the request timeout, at most one second, so the
 * request keeps most of its budget for the upstream.
 */
function staleGraceMs(requestTimeoutMs: number): number {
  return Math.min(1000, Math.floor(requestTimeoutMs / 4))
}

export function isCompiledConfig(c: unknown): c is Config {
  return typeof c === 'object' && c !== null && 'warnings' in c && Object.isFrozen(c)
}

/** Build the broker core (no listeners). */
export function createBroker(opts: DaemonOptions): Broker {
  const env = opts.env ?? {}
  const config = isCompiledConfig(opts.config) ? opts.config : compileConfig(opts.config, { env, baseDir: opts.baseDir ?? '.' })
  const credentials = Object.values(config.credentials)
  const scrubber = new Scrubber()
  const logger = createLogger({
    level: config.log.level,
    scrubber,
    ...(opts.logStream ? { destination: opts.logStream } : {}),
    sensitiveHeaders: [...new Set(credentials.map((c) => c.injector.headerName))],
  })
  for (const w of config.warnings) logger.warn({ event: 'config_warning' }, w)
  const metrics = new Metrics({ processMetrics: opts.processMetrics ?? true })
  const providers = new ProviderPool(config.providers, env, logger, config.upstream.ca)
  const byKey = new Map<string, CompiledCredential[]>()
  for (const c of credentials) byKey.set(c.cacheKey, [...(byKey.get(c.cacheKey) ?? []), c])
  // A fetch may outlive the request that started it (others share it; a refresh that came
  // too late for one request still serves the next), so its bound is the longer of one
  // request's and one provider call's timeout, whatever attempts × fetchTimeout add up to.
  const policy = {
    attempts: config.cache.fetchAttempts,
    timeoutMs: config.cache.fetchTimeout,
    baseDelayMs: 200,
    maxDelayMs: 5000,
    deadlineMs: Math.max(config.cache.fetchTimeout, config.upstream.requestTimeout),
  }
  // A dropped value stays scrubbed while requests that may have used it can still log.
  const retireMs = Math.max(RETIRED_SCRUB_MIN_MS, config.upstream.requestTimeout)

  // Label children bound once: a cache hit does no label hashing.
  // One throttle per provider: a 429 / Retry-After on one credential holds every credential of that provider.
  const throttles = new Map(Object.keys(config.providers).map((name) => [name, new SharedThrottle()]))
  const hitCounters = new Map(credentials.map((c) => [c.name, metrics.cacheHits.labels({ credential: c.name })]))
  const cache = new SecretCache({
    maxEntries: config.cache.maxEntries,
    maxStaleMs: config.cache.maxStale,
    bustCooldownMs: config.cache.bustCooldown,
    staleGraceMs: staleGraceMs(config.upstream.requestTimeout),
    refreshAhead: config.cache.refreshAhead,
    logger,
    async fetch(credential) {
      const provider = await providers.get(credential.provider)
      const end = metrics.providerLatency.startTimer({ provider: credential.provider })
      try {
        return await fetchWithRetry(provider, credential.ref, credential.version, policy, undefined, {
          onAttempt: (result) => {
            metrics.providerFetches.inc({ provider: credential.provider, result })
            if (result === 'throttled') metrics.providerThrottled.inc({ provider: credential.provider })
          },
          onRetry: (err, delayMs) => {
            metrics.providerRetries.inc({ provider: credential.provider })
            logger.debug({ event: 'provider_retry', provider: credential.provider, credential: credential.name, code: err.code, providerCode: err.providerCode, delayMs: Math.round(delayMs) }, 'retrying provider call')
          },
        }, undefined, throttles.get(credential.provider))
      } finally {
        end()
      }
    },
    onValue(credential, secret) {
      const raw = secret.reveal()
      const forms = [raw]
      for (const c of byKey.get(credential.cacheKey) ?? [credential]) {
        try {
          forms.push(...c.injector.secretForms(raw))
        } catch {
          // An unrenderable secret still has its raw value scrubbed.
        }
      }
      const { skippedShort } = scrubber.set(credential.cacheKey, forms)
      if (skippedShort > 0) logger.warn({ event: 'short_secret', credential: credential.name }, 'secret (or a part of it) is shorter than 4 characters and cannot be scrubbed from logs by value')
    },
    onDrop(key) {
      scrubber.retire(key, retireMs)
    },
    observe: {
      hit: (name) => hitCounters.get(name)?.inc(),
      miss: (name) => metrics.cacheMisses.inc({ credential: name }),
      stale: (name) => metrics.cacheStale.inc({ credential: name }),
      bust: (name, result) => metrics.busts.inc({ credential: name, result }),
      entries: (n) => metrics.cacheEntries.set(n),
    },
  })
  const prefetched = credentials.filter((c) => c.prefetch)
  return {
    config,
    logger,
    metrics,
    cache,
    scrubber,
    providers,
    resolver: new TargetResolver(config),
    notReady: () => cache.unready(prefetched).map((u) => u.name),
    unready: () => cache.unready(prefetched),
    async prefetch() {
      await Promise.all(prefetched.map((c) => cache.keep(c)))
      const missing = cache.unready(prefetched).map((u) => u.name)
      if (missing.length > 0) logger.warn({ event: 'prefetch_incomplete', credentials: missing }, 'some credentials could not be fetched at start; they are retried in the background')
      else logger.info({ event: 'ready', credentials: prefetched.length }, 'all prefetched credentials hold a value')
    },
  }
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
  })
  const forwarder = new Forwarder({ cache, agents, logger, metrics, retryBodyLimit: config.upstream.retryBodyLimit, requestTimeoutMs: config.upstream.requestTimeout })
  // The CA and X.509 code load only when interception is on.
  const makeInterceptor = extras.interceptor ?? (config.intercept.enabled ? (await import('./intercept/interceptor.ts')).createInterceptor : undefined)
  const interceptor = makeInterceptor ? await makeInterceptor(broker, forwarder) : undefined
  const proxy = createProxyServer({
    resolver: broker.resolver,
    forwarder,
    logger,
    metrics,
    connectTimeoutMs: config.upstream.connectTimeout,
    allowLinkLocal: config.upstream.allowLinkLocal,
    interceptor,
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
  await listen(proxy, config.listen.host, config.listen.port)
  try {
    await listen(admin, config.admin.listen.host, config.admin.listen.port)
  } catch (err) {
    proxy.close()
    throw err
  }
  const proxyUrl = urlOf(proxy)
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
        await interceptorClosed
        clearTimeout(timer)
        clearInterval(sweep)
        await Promise.allSettled([agents.credentialed.close(), agents.passthrough.close(), broker.providers.closeAll()])
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
