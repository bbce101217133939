/** How a promise stood when a bounded wait for it ended. */
export type Settled<T> = { readonly state: 'fulfilled'; readonly value: T } | { readonly state: 'rejected'; readonly reason: unknown } | { readonly state: 'pending' }

const PENDING: Settled<never> = Object.freeze({ state: 'pending' })

/**
 * Wait for `p` at most `ms` milliseconds and say how it stood; never rejects. `p` keeps
 * running when the wait ends first (a shared fetch goes on for the next request), and its
 * late rejection is handled here, so it is never reported as unhandled.
 *
 * The timer is not unref'd: it is bounded, cleared as soon as `p` settles, and whoever waits
 * on it is a request in progress.
 */
export function settleWithin<T>(p: Promise<T>, ms: number): Promise<Settled<T>> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(PENDING), Math.max(0, ms))
    p.then(
      (value) => {
        clearTimeout(timer)
        resolve({ state: 'fulfilled', value })
      },
      (reason: unknown) => {
        clearTimeout(timer)
        resolve({ state: 'rejected', reason })
      },
    )
  })
}
