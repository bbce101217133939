import { SYSTEM_CLOCK, type Clock } from './clock.ts'

/** How a promise stood when a bounded wait for it ended. */
export type Settled<T> = { readonly state: 'fulfilled'; readonly value: T } | { readonly state: 'rejected'; readonly reason: unknown } | { readonly state: 'pending' }

const PENDING: Settled<never> = Object.freeze({ state: 'pending' })

/**
 * Wait for `p` at most `ms` milliseconds and say how it stood; never rejects. `p` keeps
 * running when the wait ends first (a shared fetch goes on for the next request), and its
 * late rejection is handled here, so it is never reported as unhandled.
 *
 * The timer is deliberately not unref'd (house style unrefs timers; this one is the
 * exception). Whoever waits on it is a request in progress, and while a secret is being
 * fetched this timer may be the only thing holding the event loop: fetchWithRetry's attempt
 * timeout and backoff/Retry-After sleep are unref'd (a prefetch must not keep a script alive),
 * and a provider may be between sockets. Unref'd, an in-process shim request waiting out a
 * throttled fetch would let the process exit with the application's `await fetch()` never
 * settling; ref'd, the wait ends at its bound with `pending` and the request fails cleanly.
 * It costs nothing beyond that bound: it is cleared as soon as `p` settles.
 */
export function settleWithin<T>(p: Promise<T>, ms: number, clock: Clock = SYSTEM_CLOCK): Promise<Settled<T>> {
  return new Promise((resolve) => {
    const cancel = clock.setTimeout(() => resolve(PENDING), ms, true)
    p.then(
      (value) => {
        cancel()
        resolve({ state: 'fulfilled', value })
      },
      (reason: unknown) => {
        cancel()
        resolve({ state: 'rejected', reason })
      },
    )
  })
}
