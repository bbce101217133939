import net, { type AddressInfo } from 'node:net'
import { Pool, ProxyAgent, type Dispatcher } from 'undici'

export interface LoadResult {
  name: string
  requests: number
  errors: number
  rps: number
  p50ms: number
  p99ms: number
}

/**
 * Closed-loop load: `concurrency` workers each send one request at a time for
 * `durationMs` (bounded in time and by `maxRequests`), recording per-request latency.
 */
export async function runLoad(
  name: string,
  send: () => Promise<number>,
  opts: { durationMs: number; concurrency: number; maxRequests?: number },
): Promise<LoadResult> {
  const latencies: number[] = []
  let errors = 0
  const end = performance.now() + opts.durationMs
  const max = opts.maxRequests ?? 5_000_000
  const started = performance.now()
  await Promise.all(
    Array.from({ length: opts.concurrency }, async () => {
      while (performance.now() < end && latencies.length + errors < max) {
        const t = performance.now()
        try {
          const status = await send()
          if (status >= 400) errors++
          else latencies.push(performance.now() - t)
        } catch {
          errors++
        }
      }
    }),
  )
  const elapsed = (performance.now() - started) / 1000
  latencies.sort((a, b) => a - b)
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN
  return { name, requests: latencies.length, errors, rps: latencies.length / elapsed, p50ms: pct(0.5), p99ms: pct(0.99) }
}

/** A sender for GET url through a dispatcher (pooled keep-alive). */
export function getter(dispatcher: Dispatcher, origin: string, path: string): () => Promise<number> {
  return async () => {
    const r = await dispatcher.request({ origin, path, method: 'GET' })
    await r.body.dump()
    return r.statusCode
  }
}

export function pool(origin: string, connections: number): Pool {
  return new Pool(origin, { connections, pipelining: 1 })
}

export function proxyAgent(proxyUrl: string, connections: number): ProxyAgent {
  return new ProxyAgent({ uri: proxyUrl, connections })
}

/** A port free on 127.0.0.1 right now, for a child that must be told its ports up front. */
export async function freePort(): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as AddressInfo).port
  await new Promise((r) => s.close(r))
  return port
}
