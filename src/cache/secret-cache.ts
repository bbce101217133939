import { LRUCache } from 'lru-cache'
import type { Logger } from 'pino'
import type { CompiledCredential } from '../config/load.ts'
import { LatchkeyError, ProviderError } from '../errors.ts'
import type { SecretValue } from '../providers/secret-value.ts'
import { settleWithin } from './settle-within.ts'

/** Default of `CacheOptions.staleGraceMs`. */
export const DEFAULT_STALE_GRACE_MS = 1000

/** One fetched secret. `rendered` memoises the header value per credential (a cache hit allocates nothing). */
interface Entry {
  readonly secret: SecretValue
  readonly fetchedAt: number
  readonly refreshAt: number
  readonly expiresAt: number
  /** Served stale (provider failing) until then: `maxStale` past expiry, or less for a value with its own lifetime. */
  readonly staleUntil: number
  readonly rendered: Map<string, string | LatchkeyError>
}

/** What a request gets: the secret (to compare on bust) and the ready header value. */
export interface Resolved {
  readonly secret: SecretValue
  readonly headerValue: string
  readonly stale: boolean
}

export interface CacheOptions {
  maxEntries: number
  maxStaleMs: number
  bustCooldownMs: number
  /**
   * When an expired value within `maxStaleMs` is held, how long a request waits for its
   * refresh before it is served the old value (the refresh goes on in the background).
   * Keep it well below the request timeout. Default 1000.
   */
  staleGraceMs?: number
  /** Fraction of the TTL after which an entry in use is refreshed in the background. */
  refreshAhead: number
  /** Performs one provider fetch (with its own timeout and retries). */
  fetch(credential: CompiledCredential): Promise<SecretValue>
  /** Called with every newly held value so the log scrubber knows it. */
  onValue?(credential: CompiledCredential, secret: SecretValue): void
  /**
   * Called when the cache stops holding a key's value without a new one taking its place:
   * LRU eviction, `clear`, or a bust whose refetch failed. Not called when a bust evicts a
   * value to refetch it (the next `onValue` of the key replaces it).
   */
  onDrop?(cacheKey: string): void
  logger: Logger
  now?: () => number
  random?: () => number
  observe?: {
    hit?(credential: string): void
    miss?(credential: string): void
    stale?(credential: string): void
    bust?(credential: string, result: 'changed' | 'unchanged' | 'cooldown' | 'failed'): void
    entries?(n: number): void
  }
}

/**
 * The TTL cache of secrets: lru-cache bounds the number of entries; lifetimes are ours
 * because a value must outlive its TTL (stale-on-error up to `maxStale`). Concurrent misses
 * and concurrent busts of one key share one fetch. Memory only.
 */
export class SecretCache {
  readonly #entries: LRUCache<string, Entry>
  readonly #inflight = new Map<string, Promise<Entry>>()
  /** A fetch that ended throttled with a Retry-After: no provider call for the key before `until`. */
  readonly #throttled = new Map<string, { until: number; err: ProviderError }>()
  readonly #lastBust = new Map<string, number>()
  /** Keys whose in-flight refresh outlasted the stale grace once: later requests get the old value at once. */
  readonly #slowRefresh = new Set<string>()
  readonly #opts: CacheOptions
  readonly #now: () => number
  readonly #random: () => number
  readonly #staleGraceMs: number

  constructor(opts: CacheOptions) {
    this.#opts = opts
    this.#now = opts.now ?? Date.now
    this.#random = opts.random ?? Math.random
    this.#staleGraceMs = opts.staleGraceMs ?? DEFAULT_STALE_GRACE_MS
    this.#entries = new LRUCache<string, Entry>({
      max: opts.maxEntries,
      // Each entry's lru-cache TTL is its own TTL plus maxStale: past that it can never be
      // served, so it leaves memory then (an unref'd timer), even if nothing asks for it again.
      ttlAutopurge: true,
      perf: { now: this.#now },
      // Only eviction and expiry are reported here: deletes are ours (bust, clear) and report themselves.
      dispose: (_v, key, reason) => {
        if (reason === 'evict' || reason === 'expire') opts.onDrop?.(key)
        // The size shrinks after dispose returns.
        if (reason === 'expire') queueMicrotask(() => opts.observe?.entries?.(this.#entries.size))
      },
    })
  }

  /**
   * A fresh cached value, synchronously, or undefined: the hot path (no promise, no timer).
   * Starts a background refresh when the entry is past `refreshAhead` of its TTL.
   */
  peek(credential: CompiledCredential): Resolved | undefined {
    const key = credential.cacheKey
    const entry = this.#entries.get(key)
    if (entry === undefined) return undefined
    const now = this.#now()
    if (now >= entry.expiresAt) return undefined
    this.#opts.observe?.hit?.(credential.name)
    if (now >= entry.refreshAt && !this.#inflight.has(key)) {
      this.#load(credential).catch(() => undefined) // errors logged in #load; the current value stays
    }
    return this.#resolve(credential, entry, false)
  }

  /**
   * The value for a credential: cached, refreshed ahead, fetched, or stale within maxStale.
   * With an expired value still within maxStale, the refresh is waited for at most
   * `staleGraceMs`; a refresh that fails or is slower than that gets the old value served
   * (the refresh goes on, shared, in the background). Without a usable value the fetch is
   * waited for: the caller bounds that wait by its own deadline.
   */
  async get(credential: CompiledCredential): Promise<Resolved> {
    const hit = this.peek(credential)
    if (hit) return hit
    const entry = this.#entries.get(credential.cacheKey)
    this.#opts.observe?.miss?.(credential.name)
    const load = this.#load(credential)
    if (entry !== undefined && this.#withinMaxStale(entry)) {
      // One request has already waited the grace out for this refresh: nobody else waits for it.
      if (this.#slowRefresh.has(credential.cacheKey)) {
        this.#opts.observe?.stale?.(credential.name)
        return this.#resolve(credential, entry, true)
      }
      const settled = await settleWithin(load, this.#staleGraceMs)
      if (settled.state === 'fulfilled') return this.#resolve(credential, settled.value, false)
      if (this.#withinMaxStale(entry)) {
        const slow = settled.state === 'pending'
        if (slow && this.#inflight.get(credential.cacheKey) === load) this.#slowRefresh.add(credential.cacheKey)
        const code = slow ? 'provider_timeout' : ((settled.reason as LatchkeyError | undefined)?.code ?? 'provider_unavailable')
        this.#opts.observe?.stale?.(credential.name)
        this.#opts.logger.warn(
          { event: 'stale_served', credential: credential.name, code, reason: slow ? 'slow' : 'error' },
          slow ? 'provider slower than the stale grace; serving the previous value within maxStale' : 'provider failed; serving the previous value within maxStale',
        )
        return this.#resolve(credential, entry, true)
      }
      if (settled.state === 'rejected') throw unavailable(credential, settled.reason)
      // maxStale ran out while waiting: from here on this is a plain miss.
    }
    let fresh: Entry
    try {
      fresh = await load
    } catch (err) {
      throw unavailable(credential, err)
    }
    return this.#resolve(credential, fresh, false)
  }

  /** Whether a usable (unexpired) value is held: what readiness means. */
  holds(credential: CompiledCredential): boolean {
    const e = this.#entries.get(credential.cacheKey, { updateAgeOnGet: false })
    return e !== undefined && this.#now() < e.expiresAt
  }

  /**
   * After an upstream 401/403 to a request that carried `used`: evict, fetch again (one
   * fetch shared by concurrent busts; at most one per `bustCooldown`) and say whether
   * the value changed, with the new value when it did.
   */
  async bust(credential: CompiledCredential, used: SecretValue): Promise<Resolved | undefined> {
    const key = credential.cacheKey
    const current = this.#entries.get(key)
    if (current && !current.secret.equals(used)) {
      // Someone else already refreshed it.
      this.#opts.observe?.bust?.(credential.name, 'changed')
      return this.#resolve(credential, current, false)
    }
    const inflight = this.#inflight.get(key)
    if (!inflight) {
      const last = this.#lastBust.get(key)
      if (last !== undefined && this.#now() - last < this.#opts.bustCooldownMs) {
        this.#opts.observe?.bust?.(credential.name, 'cooldown')
        this.#opts.logger.info({ event: 'bust_cooldown', credential: credential.name }, 'upstream refused the credential again within bustCooldown; not refetching')
        return undefined
      }
      this.#lastBust.set(key, this.#now())
      // No onDrop: the refetch's onValue replaces the refused value, which then stays in the
      // scrubber's previous generation (requests still in flight may log it).
      this.#entries.delete(key)
      this.#opts.logger.info({ event: 'bust', credential: credential.name }, 'upstream refused the credential; evicted and refetching')
    }
    try {
      const fresh = await (inflight ?? this.#load(credential))
      const changed = !fresh.secret.equals(used)
      this.#opts.observe?.bust?.(credential.name, changed ? 'changed' : 'unchanged')
      return changed ? this.#resolve(credential, fresh, false) : undefined
    } catch (err) {
      this.#opts.observe?.bust?.(credential.name, 'failed')
      // Nothing replaced the evicted value: report it dropped (unless a later fetch already refilled the key).
      if (!this.#entries.has(key)) this.#opts.onDrop?.(key)
      this.#opts.logger.warn({ event: 'bust_refetch_failed', credential: credential.name, code: (err as LatchkeyError).code }, 'refetch after upstream refusal failed')
      return undefined
    }
  }

  /** Fetch now (prefetch); resolves true when a value is held. */
  async prefetch(credential: CompiledCredential): Promise<boolean> {
    try {
      await this.#load(credential)
      return true
    } catch {
      return false
    }
  }

  /** Drop cached values: all, or those of one credential. Returns how many entries were removed. */
  clear(credential?: CompiledCredential): number {
    if (credential) {
      const had = this.#entries.delete(credential.cacheKey)
      this.#lastBust.delete(credential.cacheKey)
      this.#throttled.delete(credential.cacheKey)
      if (had) this.#opts.onDrop?.(credential.cacheKey)
      this.#opts.observe?.entries?.(this.#entries.size)
      return had ? 1 : 0
    }
    const keys = [...this.#entries.keys()]
    const n = keys.length
    this.#entries.clear()
    for (const key of keys) this.#opts.onDrop?.(key)
    this.#lastBust.clear()
    this.#throttled.clear()
    this.#opts.observe?.entries?.(0)
    return n
  }

  get size(): number {
    return this.#entries.size
  }

  #withinMaxStale(entry: Entry): boolean {
    return this.#now() < entry.staleUntil
  }

  #load(credential: CompiledCredential): Promise<Entry> {
    const key = credential.cacheKey
    const existing = this.#inflight.get(key)
    if (existing) return existing
    // The retry loop gave up because the service asked for a longer wait than it had: until
    // then every miss fails at once (stale value or 503) instead of calling again per request.
    const held = this.#throttled.get(key)
    if (held !== undefined) {
      if (this.#now() < held.until) return Promise.reject(held.err)
      this.#throttled.delete(key)
    }
    const p = this.#opts
      .fetch(credential)
      .then((secret) => {
        const now = this.#now()
        // A value with its own lifetime (a minted token) sets its TTL and bounds its stale use.
        const ttl = secret.expiry?.ttlMs ?? credential.ttlMs * (0.9 + 0.2 * this.#random())
        const staleMs = secret.expiry ? Math.max(0, Math.min(this.#opts.maxStaleMs, secret.expiry.usableMs - ttl)) : this.#opts.maxStaleMs
        const entry: Entry = { secret, fetchedAt: now, refreshAt: now + ttl * this.#opts.refreshAhead, expiresAt: now + ttl, staleUntil: now + ttl + staleMs, rendered: new Map() }
        this.#opts.onValue?.(credential, secret)
        this.#entries.set(key, entry, { ttl: Math.ceil(ttl + staleMs) })
        this.#opts.observe?.entries?.(this.#entries.size)
        this.#opts.logger.debug({ event: 'secret_fetched', credential: credential.name, provider: credential.provider, fingerprint: secret.fingerprint(), ttlMs: Math.round(ttl) }, 'secret fetched')
        return entry
      })
      .catch((err: unknown) => {
        const e = err as ProviderError
        if (e instanceof ProviderError && e.code === 'throttled' && e.retryAfterMs !== undefined && e.retryAfterMs > 0) {
          this.#throttled.set(key, { until: this.#now() + e.retryAfterMs, err: e })
        }
        this.#opts.logger.warn(
          { event: 'provider_error', credential: credential.name, provider: credential.provider, code: e.code, providerCode: e.providerCode, err: e },
          'provider fetch failed',
        )
        throw err
      })
      .finally(() => {
        this.#inflight.delete(key)
        this.#slowRefresh.delete(key)
      })
    this.#inflight.set(key, p)
    return p
  }

  #resolve(credential: CompiledCredential, entry: Entry, stale: boolean): Resolved {
    let rendered = entry.rendered.get(credential.name)
    if (rendered === undefined) {
      let value: string | LatchkeyError
      try {
        value = credential.injector.render(entry.secret.reveal())
      } catch (err) {
        value = err instanceof LatchkeyError ? err : new LatchkeyError('invalid_secret', `credential ${credential.name}: secret cannot be rendered`)
      }
      entry.rendered.set(credential.name, value)
      rendered = value
    }
    if (rendered instanceof LatchkeyError) throw rendered
    return { secret: entry.secret, headerValue: rendered, stale }
  }
}

function unavailable(credential: CompiledCredential, err: unknown): LatchkeyError {
  const code = err instanceof LatchkeyError ? err.code : 'provider_unavailable'
  return new LatchkeyError('secret_unavailable', `credential ${credential.name} is unavailable (${code})`, { cause: err })
}
