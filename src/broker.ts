import type { Writable } from 'node:stream'
import type { Logger } from 'pino'
import { Metrics } from './admin/metrics.ts'
import { CredentialBinding } from './binding/credential-binding.ts'
import { fetchWithRetry, SharedThrottle } from './cache/fetch-with-retry.ts'
import { SecretCache, type Unready } from './cache/secret-cache.ts'
import { compileConfig, type CompiledCredential, type Config } from './config/load.ts'
import { Minters } from './mint/minters.ts'
import { ProviderPool } from './providers/provider-pool.ts'
import { createLogger } from './redact/logger.ts'
import { Scrubber } from './redact/scrubber.ts'

export interface BrokerOptions {
  /** A raw config object (as parsed from YAML) or an already compiled `Config`. */
  config: unknown
  env?: Readonly<Record<string, string | undefined>>
  /** Receives every JSON log line (default stdout). */
  logStream?: Writable
  /** Relative paths in a raw config resolve against this directory. */
  baseDir?: string
  /** Do not collect Node process metrics (several daemons in one test process). */
  processMetrics?: boolean
}

/** The pieces that turn a credential into a header value: shared by the daemon and the in-process shim. */
export interface Broker {
  readonly config: Config
  readonly logger: Logger
  readonly metrics: Metrics
  readonly cache: SecretCache
  readonly scrubber: Scrubber
  /** Destination → credential. */
  readonly binding: CredentialBinding
  /** @deprecated the same object as `binding` (older callers). */
  readonly resolver: CredentialBinding
  readonly providers: ProviderPool
  /** Token minters of minted credentials (oauth2, cloud access tokens): closed with the providers. */
  readonly minters: Minters
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

/**
 * The broker: providers, the secret cache, the log scrubber and the metrics, composed with
 * no listener. The daemon, the in-process shim and `doctor` start from it.
 */
export function createBroker(opts: BrokerOptions): Broker {
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
  // The tokens clients present to latchkey (admin, proxy client) are secrets like the cached values.
  const tokens = [config.admin.token, config.proxyAuth?.token].filter((t): t is string => t !== undefined)
  if (tokens.length > 0) scrubber.set('latchkey-tokens', tokens)
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

  // Minted credentials: a minter stands in for the provider; it reads the stored secret through
  // the cache and registers what the exchange sends (an assertion) with the scrubber.
  const minters = new Minters({ cache: (): SecretCache => cache, hold: (key, values) => void scrubber.set(key, values), logger, env, ca: config.upstream.ca, holdDownMs: config.cache.bustCooldown })

  // One throttle per provider: a 429 / Retry-After on one credential holds every credential of that provider.
  const throttles = new Map(Object.keys(config.providers).map((name) => [name, new SharedThrottle()]))
  for (const c of credentials) metrics.countCacheHit(c.name, 0)
  const cache: SecretCache = new SecretCache({
    maxEntries: config.cache.maxEntries,
    maxStaleMs: config.cache.maxStale,
    bustCooldownMs: config.cache.bustCooldown,
    staleGraceMs: staleGraceMs(config.upstream.requestTimeout),
    refreshAhead: config.cache.refreshAhead,
    logger,
    async fetch(credential) {
      const provider = credential.mint ? minters.for({ ...credential, mint: credential.mint }) : await providers.get(credential.provider)
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
      hit: (name) => metrics.countCacheHit(name),
      miss: (name) => metrics.cacheMisses.inc({ credential: name }),
      stale: (name) => metrics.cacheStale.inc({ credential: name }),
      bust: (name, result) => metrics.busts.inc({ credential: name, result }),
      entries: (n) => metrics.cacheEntries.set(n),
    },
  })
  const prefetched = credentials.filter((c) => c.prefetch)
  const binding = new CredentialBinding(credentials)
  return {
    config,
    logger,
    metrics,
    cache,
    scrubber,
    providers,
    minters,
    binding,
    resolver: binding,
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

