/** Cancels a timer set with `Clock.setTimeout`. */
export type Cancel = () => void

/**
 * Time, randomness and timers for the cache, its retry loop and its keeper. Real by default;
 * a virtual clock drives the same code in the fleet simulation and in tests without real
 * timers.
 */
export interface Clock {
  now(): number
  /** Uniform in [0, 1). */
  random(): number
  /**
   * Run `fn` after `ms`. `hold`: the timer keeps the process alive (default: it does not, so
   * background work never keeps a short script running).
   */
  setTimeout(fn: () => void, ms: number, hold?: boolean): Cancel
}

/**
 * Node's clock. `setTimeout` and `Date.now` are looked up at each call, so node:test's fake
 * timers drive it too.
 */
export const SYSTEM_CLOCK: Clock = Object.freeze({
  now: () => Date.now(),
  random: () => Math.random(),
  setTimeout(fn: () => void, ms: number, hold = false): Cancel {
    const timer = setTimeout(fn, Math.max(0, ms))
    if (!hold) timer.unref()
    return () => clearTimeout(timer)
  },
})
