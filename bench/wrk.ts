/**
 * Closed-loop load for the throughput rows: `wrk` (one thread, fixed connections) when it is
 * installed, else the in-process generator of bench/load.ts (slower: it shares a core with
 * what it measures, so its ratios are lower bounds). Forward-proxy requests are sent in
 * absolute form (`GET http://upstream/ HTTP/1.1`) through a wrk Lua script.
 */
import { spawn, spawnSync } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { getter, pool, runLoad } from './load.ts'

export interface Throughput {
  requests: number
  errors: number
  rps: number
  p50ms: number
  p99ms: number
  /** Wall time of the run, seconds. */
  seconds: number
}

export interface Target {
  /** Where connections go (the proxy). */
  connectTo: string
  /** The request target: a path for a route, an absolute URL for a forward proxy. */
  requestTarget: string
}

export function findWrk(): string | undefined {
  if (process.env.BENCH_WRK === '0') return undefined
  return spawnSync('wrk', ['-v']).error ? undefined : 'wrk'
}

let scripts = 0

/** Load `t` for `durationMs` (whole seconds with wrk) with `connections` connections. */
export async function load(dir: string, t: Target, opts: { durationMs: number; connections: number }): Promise<Throughput> {
  const wrk = findWrk()
  if (!wrk) return loadInProcess(t, opts)
  const lua = [`wrk.path = ${JSON.stringify(t.requestTarget)}`]
  if (t.requestTarget.startsWith('http://')) lua.push(`wrk.headers["Host"] = ${JSON.stringify(new URL(t.requestTarget).host)}`)
  const script = path.join(dir, `wrk-${process.pid}-${scripts++}.lua`)
  await writeFile(script, lua.join('\n') + '\n')
  const seconds = Math.max(1, Math.ceil(opts.durationMs / 1000))
  const out = await new Promise<string>((resolve, reject) => {
    const c = spawn(wrk, ['-t1', `-c${opts.connections}`, `-d${seconds}s`, '--latency', '-s', script, t.connectTo], { stdio: ['ignore', 'pipe', 'pipe'] })
    let s = ''
    c.stdout.on('data', (b: Buffer) => (s += b.toString()))
    c.stderr.on('data', (b: Buffer) => (s += b.toString()))
    c.once('error', reject)
    c.once('exit', (code) => (code === 0 ? resolve(s) : reject(new Error(`wrk exited ${code}: ${s.slice(0, 300)}`))))
  })
  return parseWrk(out)
}

const UNIT: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 }

export function parseWrk(out: string): Throughput {
  const m = /(\d+) requests in ([\d.]+)(us|ms|s|m)/.exec(out)
  if (!m) throw new Error(`cannot read wrk output: ${out.slice(0, 300)}`)
  const requests = Number(m[1])
  const seconds = (Number(m[2]) * UNIT[m[3]!]!) / 1000
  const pct = (p: string) => {
    const x = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)`, 'm').exec(out)
    return x ? Number(x[1]) * UNIT[x[2]!]! : NaN
  }
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0)
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const errors = non2xx + (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0)
  return { requests, errors, rps: requests / seconds, p50ms: pct('50'), p99ms: pct('99'), seconds }
}

async function loadInProcess(t: Target, opts: { durationMs: number; connections: number }): Promise<Throughput> {
  const absolute = t.requestTarget.startsWith('http://')
  const p = pool(t.connectTo, opts.connections)
  const send = absolute
    ? async () => {
        const r = await p.request({ path: t.requestTarget, method: 'GET', headers: { host: new URL(t.requestTarget).host } })
        await r.body.dump()
        return r.statusCode
      }
    : getter(p, t.connectTo, t.requestTarget)
  const t0 = performance.now()
  const r = await runLoad('load', send, { durationMs: opts.durationMs, concurrency: opts.connections })
  await p.close()
  return { requests: r.requests, errors: r.errors, rps: r.rps, p50ms: r.p50ms, p99ms: r.p99ms, seconds: (performance.now() - t0) / 1000 }
}
