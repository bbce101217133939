import { LatchkeyError, ProviderError } from '../errors.ts'
import { raceAbort } from '../providers/abortable.ts'
import type { SecretProvider } from '../providers/provider.ts'
import type { SecretValue } from '../providers/secret-value.ts'
import { SYSTEM_CLOCK, type Clock } from './clock.ts'

export interface RetryPolicy {
  /** Provider calls at most (first try + retries). */
  attempts: number
  /** Timeout of one provider call. */
  timeoutMs: number
  /** Backoff before retry n is drawn uniformly from [0, min(maxDelayMs, baseDelayMs * 2^(n-1))) (full jitter). */
  baseDelayMs: number
  maxDelayMs: number
  /**
   * Bound on the whole fetch: every attempt, its timeout and every wait between attempts.
   * An attempt gets at most what is left of it; a wait (backoff or Retry-After) that would
   * end past it is not taken: the last error is thrown at once. Unset: only the attempt
   * count bounds the fetch.
   */
  deadlineMs?: number
}

/**
 * A provider's shared throttle: when one call is throttled, every call to that provider
 * (any credential) waits until `until`. One per provider in a process.
 */
export interface Throttle {
  readonly until: number
  hold(until: number): void
}

/** A `Throttle` that only ever moves later: concurrent holds keep the longest. */
export class SharedThrottle implements Throttle {
  #until = 0
  get until(): number {
    return this.#until
  }
  hold(until: number): void {
    if (until > this.#until) this.#until = until
  }
}

export interface FetchObserver {
  onAttempt?(result: 'ok' | string, ms: number): void
  onRetry?(err: ProviderError, delayMs: number): void
}

/** Time, randomness and timers of the retry loop (the fleet simulation passes a virtual clock). */
export type RetryClock = Clock

/** The full-jitter draw: uniform in [0, min(capMs, baseMs * 2^(n-1))) before retry n. */
export function backoffMs(n: number, baseMs: number, capMs: number, random: () => number): number {
  return random() * Math.min(capMs, baseMs * 2 ** Math.max(0, n - 1))
}

/**
 * Call a provider with latchkey's own timeout and a bounded retry loop for transient
 * failures: exponential backoff with full jitter, or the service's Retry-After when that is
 * longer. A Retry-After is honoured as the provider parsed it (each provider caps it: 300 s
 * AWS, 60 s Azure), never shortened to our backoff cap: retrying sooner only spends quota.
 * When the wait would end past `deadlineMs`, the fetch fails at once with that error
 * (`throttled` stays `throttled`) instead of sleeping past the caller's deadline.
 * SDK retries are off in every provider, so this is the only retry loop.
 */
export async function fetchWithRetry(
  provider: SecretProvider,
  ref: string,
  version: string | undefined,
  policy: RetryPolicy,
  signal: AbortSignal | undefined,
  observer: FetchObserver = {},
  clock: RetryClock = SYSTEM_CLOCK,
  throttle?: Throttle,
): Promise<SecretValue> {
  const deadline = policy.deadlineMs === undefined ? Infinity : clock.now() + policy.deadlineMs
  let last: ProviderError | undefined
  for (let attempt = 1; attempt <= policy.attempts; attempt++) {
    const held = (throttle?.until ?? 0) - clock.now()
    if (held > 0) {
      if (clock.now() + held >= deadline) throw last ?? new ProviderError('throttled', 'the provider is throttling; not called before its Retry-After ends', { retryAfterMs: held })
      // Jittered, so the calls that waited for the same throttle do not resume together.
      await sleep(held + clock.random() * policy.baseDelayMs, signal, clock)
      if (signal?.aborted) throw last ?? new ProviderError('provider_timeout', 'aborted while the provider was throttling')
    }
    const started = clock.now()
    const budget = Math.min(policy.timeoutMs, deadline - clock.now())
    const timeout = new AbortController()
    // The clock's timer (not AbortSignal.timeout) so that fake and virtual clocks drive it.
    // Unref'd: a prefetch in the in-process shim must not keep a short script alive once its
    // own work is done. A request waiting for this fetch is held up by its own ref'd bound
    // (settleWithin), not by these timers.
    const cancelTimeout = clock.setTimeout(() => timeout.abort(), budget)
    const combined = signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal
    try {
      // Raced as well as signalled: a provider that ignores its signal still cannot hold us.
      const value = await raceAbort(() => provider.fetch(ref, { signal: combined, version }), combined, abortError)
      observer.onAttempt?.('ok', clock.now() - started)
      return value
    } catch (err) {
      last = toProviderError(err, timeout.signal.aborted && !signal?.aborted)
      observer.onAttempt?.(last.code, clock.now() - started)
      const delay = Math.max(last.retryAfterMs ?? 0, backoffMs(attempt, policy.baseDelayMs, policy.maxDelayMs, () => clock.random()))
      // Every credential of this provider waits too, whether or not this fetch retries.
      if (last.code === 'throttled') throttle?.hold(clock.now() + delay)
      if (signal?.aborted || !last.retryable || attempt === policy.attempts) throw last
      if (clock.now() + delay >= deadline) throw last
      observer.onRetry?.(last, delay)
      await sleep(delay, signal, clock)
      if (signal?.aborted) throw last
    } finally {
      cancelTimeout()
    }
  }
  throw last ?? new ProviderError('provider_unavailable', 'provider fetch failed')
}

const ABORTED = Object.freeze(Object.assign(new Error('aborted'), { name: 'AbortError' }))
/** toProviderError maps it to provider_timeout. */
const abortError = (): Error => ABORTED

/** Resolves after `ms`, or at once when `signal` fires. */
function sleep(ms: number, signal: AbortSignal | undefined, clock: Clock): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const done = () => {
      cancel()
      signal?.removeEventListener('abort', done)
      resolve()
    }
    // Not unref'd: between attempts nothing else holds the loop, and a caller awaiting the
    // fetch (`await interceptor.ready` in a script) must not see the process exit under it.
    // The wait is bounded by the fetch's deadline. (An attempt's timer is unref'd: the
    // provider's own socket holds the loop while it runs.)
    const cancel = clock.setTimeout(done, ms, true)
    signal?.addEventListener('abort', done, { once: true })
  })
}

/** Anything a provider throws becomes a ProviderError; unknown errors keep only their class and code. */
export function toProviderError(err: unknown, timedOut: boolean): ProviderError {
  if (err instanceof ProviderError) return err
  if (timedOut || (err as { name?: string })?.name === 'AbortError' || (err as { name?: string })?.name === 'TimeoutError') {
    return new ProviderError('provider_timeout', 'provider did not answer in time', { retryable: true })
  }
  if (err instanceof LatchkeyError) return new ProviderError('provider_config', err.message)
  // Unknown errors may carry request configs or bodies: keep only name and code.
  const e = err as { name?: unknown; code?: unknown }
  const what = [typeof e?.name === 'string' ? e.name : 'Error', typeof e?.code === 'string' ? e.code : undefined].filter(Boolean).join(' ')
  return new ProviderError('provider_unavailable', `provider failed (${what})`, { providerCode: typeof e?.code === 'string' ? e.code : undefined, retryable: false })
}
