import type { Cancel, Clock } from '../../src/cache/clock.ts'

interface Timer {
  at: number
  seq: number
  fn: (() => void) | undefined
}

/**
 * A `Clock` whose time moves only when `runUntil` moves it: timers fire in order of their
 * due time (ties in the order they were set), and after each one every promise callback it
 * caused runs before the next timer fires, so async code sees time exactly as it would on a
 * real clock that never lags. Randomness is a seeded PRNG (mulberry32): runs repeat exactly.
 */
export class VirtualClock implements Clock {
  #now: number
  #seq = 0
  #seed: number
  readonly #heap: Timer[] = []

  constructor(start = 0, seed = 1) {
    this.#now = start
    this.#seed = seed >>> 0
  }

  now(): number {
    return this.#now
  }

  random(): number {
    let t = (this.#seed = (this.#seed + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  setTimeout(fn: () => void, ms: number): Cancel {
    const timer: Timer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn }
    this.#push(timer)
    return () => {
      timer.fn = undefined
    }
  }

  /** Timers not yet fired (cancelled ones included until their time comes). */
  get pending(): number {
    return this.#heap.length
  }

  /** Fire the earliest pending timer (and whatever it causes); false when none is pending. */
  async runNext(): Promise<boolean> {
    for (;;) {
      const top = this.#heap[0]
      if (top === undefined) return false
      this.#pop()
      if (top.fn === undefined) continue
      this.#now = top.at
      top.fn()
      await new Promise<void>((r) => setImmediate(r))
      return true
    }
  }

  /** Run timers until `p` settles; its outcome. */
  async settle<T>(p: Promise<T>): Promise<PromiseSettledResult<T>> {
    let out: PromiseSettledResult<T> | undefined
    p.then(
      (value) => (out = { status: 'fulfilled', value }),
      (reason: unknown) => (out = { status: 'rejected', reason }),
    )
    await new Promise<void>((r) => setImmediate(r))
    while (out === undefined && (await this.runNext()));
    if (out === undefined) throw new Error('the promise cannot settle: no timer is pending')
    return out
  }

  /** Fire every timer due up to `t` (in order), then set the time to `t`. */
  async runUntil(t: number): Promise<void> {
    for (;;) {
      const top = this.#heap[0]
      if (top === undefined || top.at > t) break
      this.#pop()
      if (top.fn === undefined) continue
      this.#now = top.at
      top.fn()
      // Every microtask the timer queued (and those they queue) runs before setImmediate's callback.
      await new Promise<void>((r) => setImmediate(r))
    }
    this.#now = Math.max(this.#now, t)
    await new Promise<void>((r) => setImmediate(r))
  }

  #less(a: Timer, b: Timer): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq)
  }

  #push(x: Timer): void {
    const h = this.#heap
    h.push(x)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      const parent = h[p] as Timer
      if (!this.#less(x, parent)) break
      h[i] = parent
      i = p
    }
    h[i] = x
  }

  #pop(): void {
    const h = this.#heap
    const last = h.pop()
    if (last === undefined || h.length === 0) return
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      if (l >= h.length) break
      const r = l + 1
      const c = r < h.length && this.#less(h[r] as Timer, h[l] as Timer) ? r : l
      if (!this.#less(h[c] as Timer, last)) break
      h[i] = h[c] as Timer
      i = c
    }
    h[i] = last
  }
}
