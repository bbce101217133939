import type { CompiledCredential } from '../config/load.ts'
import type { Cancel, Clock } from './clock.ts'

/** What the keeper asks of the cache. */
export interface KeeperHost {
  /** When the held value is next due for a refresh; undefined when none is held. */
  refreshAt(credential: CompiledCredential): number | undefined
  /** When a credential whose last fetch failed may be tried again; undefined when it is not failing. */
  retryAt(credential: CompiledCredential): number | undefined
  /** Fetch now (shared with any fetch in flight); settles when it is done. */
  load(credential: CompiledCredential): Promise<unknown>
}

/**
 * Keeps declared (prefetched) credentials fresh with no traffic: one timer per cache key,
 * set for the value's refresh-ahead point, or for the failure's retry time (the cache draws
 * it: jittered backoff, Retry-After). A tick that finds the value already refreshed (a
 * request did it) only sets the timer again. Timers are the clock's and unref'd: keeping
 * never holds the process open.
 */
export class Keeper {
  readonly #host: KeeperHost
  readonly #clock: Clock
  /** Used when the cache holds neither a value nor a failure (an evicted entry): try again after this. */
  readonly #idleMs: number
  readonly #kept = new Map<string, { credential: CompiledCredential; cancel: Cancel | undefined }>()
  #stopped = false

  constructor(host: KeeperHost, clock: Clock, idleMs: number) {
    this.#host = host
    this.#clock = clock
    this.#idleMs = idleMs
  }

  /** Start keeping `credential`: fetch now. Resolves when that first attempt has settled. */
  keep(credential: CompiledCredential): Promise<void> {
    const key = credential.cacheKey
    if (this.#stopped || this.#kept.has(key)) return Promise.resolve()
    this.#kept.set(key, { credential, cancel: undefined })
    return this.#tick(key)
  }

  /** Run the key's tick now (after its value was cleared): readiness comes back without waiting for the timer. */
  poke(key: string): void {
    if (this.#kept.has(key)) void this.#tick(key)
  }

  pokeAll(): void {
    for (const key of this.#kept.keys()) void this.#tick(key)
  }

  isKept(key: string): boolean {
    return this.#kept.has(key)
  }

  stop(): void {
    this.#stopped = true
    for (const k of this.#kept.values()) k.cancel?.()
    this.#kept.clear()
  }

  #tick(key: string): Promise<void> {
    const kept = this.#kept.get(key)
    if (this.#stopped || kept === undefined) return Promise.resolve()
    kept.cancel?.()
    kept.cancel = undefined
    const now = this.#clock.now()
    const due = this.#next(kept.credential)
    if (due !== undefined && now < due) {
      this.#arm(key, due - now)
      return Promise.resolve()
    }
    return this.#host.load(kept.credential).then(
      () => this.#rearm(key),
      () => this.#rearm(key),
    )
  }

  #rearm(key: string): void {
    const kept = this.#kept.get(key)
    if (this.#stopped || kept === undefined) return
    const next = this.#next(kept.credential)
    this.#arm(key, next === undefined ? this.#idleMs : Math.max(0, next - this.#clock.now()))
  }

  /** A failing key waits for its retry time (its old value's refresh point has passed). */
  #next(credential: CompiledCredential): number | undefined {
    return this.#host.retryAt(credential) ?? this.#host.refreshAt(credential)
  }

  #arm(key: string, ms: number): void {
    const kept = this.#kept.get(key)
    if (kept === undefined) return
    kept.cancel?.()
    kept.cancel = this.#clock.setTimeout(() => void this.#tick(key), ms)
  }
}
