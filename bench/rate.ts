/**
 * Open-loop, constant-rate load (what wrk2 does): request i is due at start + i/rate, and its
 * latency is counted from when it was due, not from when a connection was free, so a stall
 * shows in the percentiles instead of lowering the rate (no coordinated omission).
 */
import { Pool } from 'undici'

export interface RateResult {
  rate: number
  sent: number
  errors: number
  p50ms: number
  p99ms: number
  /** Requests that could not be sent on time (the generator fell behind by more than 1 ms). */
  late: number
}

export async function constantRate(origin: string, path: string, opts: { rate: number; durationMs: number; connections: number }): Promise<RateResult> {
  const p = new Pool(origin, { connections: opts.connections, pipelining: 1 })
  const latencies: number[] = []
  let errors = 0
  let late = 0
  const total = Math.floor((opts.rate * opts.durationMs) / 1000)
  const start = performance.now() + 50
  const pending: Promise<void>[] = []
  let i = 0
  const one = async (due: number) => {
    try {
      const r = await p.request({ path, method: 'GET' })
      await r.body.dump()
      if (r.statusCode >= 400) errors++
      else latencies.push(performance.now() - due)
    } catch {
      errors++
    }
  }
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now()
      while (i < total) {
        const due = start + (i * 1000) / opts.rate
        if (due > now) break
        if (now - due > 1) late++
        pending.push(one(due))
        i++
      }
      if (i >= total) resolve()
      else setTimeout(tick, Math.max(0, Math.min(1, start + (i * 1000) / opts.rate - performance.now())))
    }
    setTimeout(tick, 50)
  })
  await Promise.all(pending)
  await p.close()
  latencies.sort((a, b) => a - b)
  const pct = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))] ?? NaN
  return { rate: opts.rate, sent: total, errors, p50ms: pct(0.5), p99ms: pct(0.99), late }
}
