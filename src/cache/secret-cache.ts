import { LRUCache } from 'lru-cache'
import type { Logger } from 'pino'
import type { CompiledCredential } from '../config/load.ts'
import { LatchkeyError, ProviderError } from '../errors.ts'
import type { SecretValue } from '../providers/secret-value.ts'
import { SYSTEM_CLOCK, type Clock } from './clock.ts'
import { backoffMs } from './fetch-with-retry.ts'
import { Keeper } from './keeper.ts'
import { settleWithin } from './settle-within.ts'

/** Default of `CacheOptions.staleGraceMs`. */
export const DEFAULT_STALE_GRACE_MS = 1000

/** Default of `CacheOptions.retry`. */
export const DEFAULT_RETRY = Object.freeze({ baseMs: 1000, maxMs: 30_000 })

/** A key whose last fetch failed: no provider call for it before `until`, whoever asks. */
interface Failure {
  readonly count: number
  readonly since: number
  readonly until: number
  readonly err: LatchkeyError
  /** A stale value was served (and logged) during this run of failures. */
  staleLogged: boolean
}

/** A prefetched credential that cannot be served now, and why (a code, never a value). */
export interface Unready {
  readonly name: string
  /** The last fetch's error code, or `pending` while the first fetch runs. */
  readonly code: string
}

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
  /** Time, randomness and timers (default: the system's). */
  clock?: Clock
  /**
   * Background retry after a failed fetch, for a credential with no value that may be served:
   * full-jitter exponential backoff from `baseMs`, capped at `maxMs` (or at the credential's
   * refresh interval when that is shorter, but never below `baseMs`). A credential that still
   * holds a servable value retries about as often as it refreshes, sooner as `maxStale` runs
   * out. A Retry-After is always honoured. Default `DEFAULT_RETRY`.
   */
  retry?: { baseMs: number; maxMs: number }
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
  readonly #failures = new Map<string, Failure>()
  readonly #lastBust = new Map<string, number>()
  /** Keys evicted by a bust whose refetch runs: still counted as servable (readiness does not blink for it). */
  readonly #busting = new Set<string>()
  /** Keys whose in-flight refresh outlasted the stale grace once: later requests get the old value at once. */
  readonly #slowRefresh = new Set<string>()
  readonly #opts: CacheOptions
  readonly #clock: Clock
  readonly #now: () => number
  readonly #random: () => number
  readonly #staleGraceMs: number
  readonly #retry: { baseMs: number; maxMs: number }
  readonly #keeper: Keeper

  constructor(opts: CacheOptions) {
    this.#opts = opts
    this.#clock = opts.clock ?? SYSTEM_CLOCK
    const clock = this.#clock
    this.#now = () => clock.now()
    this.#random = () => clock.random()
    this.#staleGraceMs = opts.staleGraceMs ?? DEFAULT_STALE_GRACE_MS
    this.#retry = opts.retry ?? DEFAULT_RETRY
    this.#keeper = new Keeper(
      {
        refreshAt: (c) => this.#entries.get(c.cacheKey, { updateAgeOnGet: false })?.refreshAt,
        retryAt: (c) => this.#failures.get(c.cacheKey)?.until,
        load: (c) => this.#load(c),
      },
      this.#clock,
      this.#retry.baseMs,
    )
    this.#entries = new LRUCache<string, Entry>({
      max: opts.maxEntries,
      // Each entry's lru-cache TTL is its own TTL plus maxStale: past that it can never be
      // served, so it leaves memory then (an unref'd timer), even if nothing asks for it again.
      // lru-cache's purge timer is a real one: on another clock, expired entries are only
      // hidden (lru-cache checks the TTL on every read), not purged.
      ttlAutopurge: this.#clock === SYSTEM_CLOCK,
      // On the system clock lru-cache times its TTLs with performance.now(): a fractional,
      // monotonic clock. With whole milliseconds, a purge timer could find an entry exactly at its
      // TTL (not yet stale, 0 ms left), arm no new timer, and keep the value in memory for good.
      // ttlResolution 0: no cached "now", so no timer per read on the hot path either.
      perf: this.#clock === SYSTEM_CLOCK ? performance : { now: this.#now },
      ttlResolution: 0,
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
      const settled = await settleWithin(load, this.#staleGraceMs, this.#clock)
      if (settled.state === 'fulfilled') return this.#resolve(credential, settled.value, false)
      if (this.#withinMaxStale(entry)) {
        const slow = settled.state === 'pending'
        if (slow && this.#inflight.get(credential.cacheKey) === load) this.#slowRefresh.add(credential.cacheKey)
        this.#servedStale(credential, slow, settled.state === 'rejected' ? settled.reason : undefined)
        return this.#resolve(credential, entry, true)
      }
      if (settled.state === 'rejected') throw unavailable(credential, settled.reason)
      // maxStale ran out while waiting: from here on this is a plain miss.
    }
    let fresh: Entry
    try {
      fresh = await this.#afterGate(credential, load)
    } catch (err) {
      throw unavailable(credential, err)
    }
    return this.#resolve(credential, fresh, false)
  }

  /**
   * With nothing to serve, a failed fetch (the gate's at once, or one in flight that this
   * request joined) whose retry is due within the stale grace is waited for and shared,
   * twice at most, rather than failed at once: a request just after the provider comes back
   * is served. A later retry fails the request now, with the last error.
   */
  async #afterGate(credential: CompiledCredential, first: Promise<Entry>): Promise<Entry> {
    let load = first
    for (let waits = 0; ; waits++) {
      try {
        return await load
      } catch (err) {
        const gated = this.#gated(credential.cacheKey)
        if (waits >= 2 || gated === undefined || gated.until - this.#now() > this.#staleGraceMs) throw err
        await new Promise<void>((resolve) => this.#clock.setTimeout(resolve, gated.until - this.#now(), true))
        load = this.#load(credential)
      }
    }
  }

  /** Whether an unexpired value is held. */
  holds(credential: CompiledCredential): boolean {
    const e = this.#entries.get(credential.cacheKey, { updateAgeOnGet: false })
    return e !== undefined && this.#now() < e.expiresAt
  }

  /** Whether a value that may be served now is held: fresh, or expired within maxStale. */
  servable(credential: CompiledCredential): boolean {
    const e = this.#entries.get(credential.cacheKey, { updateAgeOnGet: false })
    return e !== undefined && this.#withinMaxStale(e)
  }

  /**
   * Readiness: the credentials (of those given) that cannot be served now, each with the
   * code of its last fetch error. Empty when every one can.
   */
  unready(credentials: readonly CompiledCredential[]): Unready[] {
    const out: Unready[] = []
    for (const c of credentials) {
      const e = this.#entries.get(c.cacheKey, { updateAgeOnGet: false })
      if (e === undefined || !this.#withinMaxStale(e)) {
        if (!this.#busting.has(c.cacheKey)) out.push({ name: c.name, code: this.#failures.get(c.cacheKey)?.err.code ?? 'pending' })
        continue
      }
      // A value every request would refuse (a missing field, CR/LF) cannot be served either.
      const rendered = this.#render(c, e)
      if (rendered instanceof LatchkeyError) out.push({ name: c.name, code: rendered.code })
    }
    return out
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
      // The provider is failing and its retry is not due: keep the value (other hosts may still take it).
      if (this.#gated(key)) {
        this.#opts.observe?.bust?.(credential.name, 'cooldown')
        this.#opts.logger.debug({ event: 'bust_deferred', credential: credential.name }, 'upstream refused the credential while the provider is failing; not refetching before its retry')
        return undefined
      }
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
      this.#busting.add(key)
      this.#opts.logger.info({ event: 'bust', credential: credential.name }, 'upstream refused the credential; evicted and refetching')
    }
    try {
      const fresh = await (inflight ?? this.#load(credential)).finally(() => this.#busting.delete(key))
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

  /**
   * Keep `credential` fresh from now on, used or not: fetch now, refresh ahead of expiry, and
   * after a failure retry in the background until a fetch succeeds. Resolves when the first
   * fetch has settled (whatever its outcome).
   */
  keep(credential: CompiledCredential): Promise<void> {
    return this.#keeper.keep(credential)
  }

  /** Stop keeping and drop every value (the daemon is stopping). */
  close(): void {
    this.#keeper.stop()
    this.clear()
  }

  /** Drop cached values: all, or those of one credential. Returns how many entries were removed. */
  clear(credential?: CompiledCredential): number {
    if (credential) {
      const had = this.#entries.delete(credential.cacheKey)
      this.#lastBust.delete(credential.cacheKey)
      this.#failures.delete(credential.cacheKey)
      if (had) this.#opts.onDrop?.(credential.cacheKey)
      this.#opts.observe?.entries?.(this.#entries.size)
      // A kept credential is fetched again at once, so readiness does not wait for its timer.
      this.#keeper.poke(credential.cacheKey)
      return had ? 1 : 0
    }
    const keys = [...this.#entries.keys()]
    const n = keys.length
    this.#entries.clear()
    for (const key of keys) this.#opts.onDrop?.(key)
    this.#lastBust.clear()
    this.#failures.clear()
    this.#opts.observe?.entries?.(0)
    this.#keeper.pokeAll()
    return n
  }

  get size(): number {
    return this.#entries.size
  }

  #withinMaxStale(entry: Entry): boolean {
    return this.#now() < entry.staleUntil
  }

  /** A failure whose retry is not due yet: no provider call for the key before then. */
  #gated(key: string): Failure | undefined {
    const f = this.#failures.get(key)
    return f !== undefined && this.#now() < f.until ? f : undefined
  }

  #load(credential: CompiledCredential): Promise<Entry> {
    const key = credential.cacheKey
    const existing = this.#inflight.get(key)
    if (existing) return existing
    // Until the retry is due, every miss fails at once (stale value or 503) instead of calling
    // again: the provider sees a bounded rate per credential however many requests arrive.
    const gated = this.#gated(key)
    if (gated !== undefined) return Promise.reject(gated.err)
    const p = this.#opts
      .fetch(credential)
      .then((secret) => {
        const now = this.#now()
        // A value with its own lifetime (a minted token) sets its TTL and bounds its stale use.
        const ttl = secret.expiry?.ttlMs ?? credential.ttlMs * (0.9 + 0.2 * this.#random())
        const staleMs = secret.expiry ? Math.max(0, Math.min(this.#opts.maxStaleMs, secret.expiry.usableMs - ttl)) : this.#opts.maxStaleMs
        const failed = this.#failures.get(key)
        // A value that does not replace a refreshed one (the first, one after a bust, one that
        // ends a failure) has its refresh point drawn over the last 70 % of the refresh-ahead
        // span: a fleet that started, recovered or rotated together does not refresh together.
        const ahead = this.#opts.refreshAhead * (failed === undefined && this.#entries.has(key) ? 1 : 0.3 + 0.7 * this.#random())
        const entry: Entry = { secret, fetchedAt: now, refreshAt: now + ttl * ahead, expiresAt: now + ttl, staleUntil: now + ttl + staleMs, rendered: new Map() }
        this.#opts.onValue?.(credential, secret)
        this.#entries.set(key, entry, { ttl: Math.ceil(ttl + staleMs) })
        this.#opts.observe?.entries?.(this.#entries.size)
        // The fingerprint is a hash: computed only when the line is written.
        if (this.#opts.logger.isLevelEnabled('debug')) {
          this.#opts.logger.debug({ event: 'secret_fetched', credential: credential.name, provider: credential.provider, fingerprint: secret.fingerprint(), ttlMs: Math.round(ttl) }, 'secret fetched')
        }
        if (failed !== undefined) {
          this.#failures.delete(key)
          this.#opts.logger.info(
            { event: 'provider_recovered', credential: credential.name, provider: credential.provider, failures: failed.count, downMs: Math.round(now - failed.since) },
            'provider fetch succeeded again',
          )
        }
        return entry
      })
      .catch((err: unknown) => {
        const e = err instanceof LatchkeyError ? err : new ProviderError('provider_unavailable', 'provider fetch failed')
        const now = this.#now()
        const prev = this.#failures.get(key)
        const count = (prev?.count ?? 0) + 1
        const retryInMs = this.#retryDelay(credential, count, e)
        this.#failures.set(key, { count, since: prev?.since ?? now, until: now + retryInMs, err: e, staleLogged: prev?.staleLogged ?? false })
        // Once per change of state, not per attempt: a long outage writes one line, not one per retry.
        const fields = { credential: credential.name, provider: credential.provider, code: e.code, providerCode: (e as ProviderError).providerCode, failures: count, retryInMs: Math.round(retryInMs) }
        if (prev === undefined || prev.err.code !== e.code) this.#opts.logger.warn({ event: 'provider_error', ...fields, err: e }, 'provider fetch failed; retrying in the background')
        else this.#opts.logger.debug({ event: 'provider_retry_failed', ...fields }, 'provider fetch failed again')
        throw err
      })
      .finally(() => {
        this.#inflight.delete(key)
        this.#slowRefresh.delete(key)
      })
    this.#inflight.set(key, p)
    return p
  }

  /**
   * When to try a failing key again. Without a servable value something is waiting (readiness,
   * requests): capped exponential backoff with full jitter. With one, nothing is: spread the
   * retry like a refresh (a fleet that lost its provider then calls it no more often than when
   * it was up, and its recovery is as spread as its refreshes), but within half of what is left
   * of maxStale, so tries come faster as that runs out. A Retry-After is a floor.
   */
  #retryDelay(credential: CompiledCredential, count: number, err: LatchkeyError): number {
    const { baseMs, maxMs } = this.#retry
    const refreshMs = credential.ttlMs * this.#opts.refreshAhead
    const capMs = Math.max(baseMs, Math.min(maxMs, refreshMs))
    const entry = this.#entries.get(credential.cacheKey, { updateAgeOnGet: false })
    const slackMs = entry === undefined ? 0 : entry.staleUntil - this.#now()
    const spreadMs = Math.min(2 * refreshMs, slackMs / 2)
    const delay = spreadMs > capMs ? this.#random() * spreadMs : backoffMs(count, baseMs, capMs, this.#random)
    return Math.max(delay, (err as ProviderError).retryAfterMs ?? 0)
  }

  /** Count every stale serve; log the first of each slow refresh and of each run of failures. */
  #servedStale(credential: CompiledCredential, slow: boolean, reason: unknown): void {
    this.#opts.observe?.stale?.(credential.name)
    const f = this.#failures.get(credential.cacheKey)
    if (!slow && f !== undefined) {
      if (f.staleLogged) return
      f.staleLogged = true
    }
    const code = slow ? 'provider_timeout' : ((reason as LatchkeyError | undefined)?.code ?? 'provider_unavailable')
    this.#opts.logger.warn(
      { event: 'stale_served', credential: credential.name, code, reason: slow ? 'slow' : 'error' },
      slow ? 'provider slower than the stale grace; serving the previous value within maxStale' : 'provider failed; serving the previous value within maxStale',
    )
  }

  #resolve(credential: CompiledCredential, entry: Entry, stale: boolean): Resolved {
    const rendered = this.#render(credential, entry)
    if (rendered instanceof LatchkeyError) throw rendered
    return { secret: entry.secret, headerValue: rendered, stale }
  }

  /** The header value for `credential` from `entry`, or why it cannot be sent; rendered once per entry. */
  #render(credential: CompiledCredential, entry: Entry): string | LatchkeyError {
    let rendered = entry.rendered.get(credential.name)
    if (rendered === undefined) {
      try {
        rendered = credential.injector.render(entry.secret.reveal())
      } catch (err) {
        rendered = err instanceof LatchkeyError ? err : new LatchkeyError('invalid_secret', `credential ${credential.name}: secret cannot be rendered`)
      }
      entry.rendered.set(credential.name, rendered)
    }
    return rendered
  }
}

function unavailable(credential: CompiledCredential, err: unknown): LatchkeyError {
  const code = err instanceof LatchkeyError ? err.code : 'provider_unavailable'
  return new LatchkeyError('secret_unavailable', `credential ${credential.name} is unavailable (${code})`, { cause: err })
}
