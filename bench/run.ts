/**
 * `npm run bench`: every target of the sidecar, measured in one run and printed as one table
 * (target, measured, ratio, pass/fail), then the rows each figure comes from. Targets are
 * printed, never asserted: a busy machine moves them.
 *
 * What runs (all on 127.0.0.1, each server its own process):
 * - the upstream: nginx `return 200` when nginx is installed, else bench/upstream.ts;
 * - latchkey as shipped: the built package's bin (bench/shipped.ts), env provider, one route;
 * - the Node ceiling: bench/minimal-proxy.ts (node:http + one undici Agent, adding a header),
 *   with the same V8 flags as the shipped bin;
 * - nginx, one worker, `proxy_set_header` (the row says skipped without nginx);
 * - load: wrk -t1 (bench/wrk.ts; the in-process generator without wrk), a constant-rate
 *   generator for the latency target (bench/rate.ts), the interception bench (bench/intercept.ts).
 * CPU per request is the main thread's on-CPU time (scheduler counters in /proc, the same
 * reader for every process) over the requests of the run. Linux only.
 *
 * Options (env): BENCH_DURATION_MS (5000) per throughput row, BENCH_CONCURRENCY (32),
 * BENCH_ROUNDS (2: rows are measured in alternating rounds and summed), BENCH_SOAK_REQUESTS
 * (100000; the target is stated for 1000000), BENCH_IDLE_MS (10000), BENCH_STARTUP_RUNS (5),
 * BENCH_FROM_SOURCES=1 (latchkey from src/ instead of the build), BENCH_NGINX=0 / BENCH_WRK=0
 * (leave them out), BENCH_PROVIDERS=1 (also start-up per provider type, bench/startup.ts),
 * BENCH_ONLY=a,b (sections: throughput,latency,intercept,idle,ready,soak,micro,fleet),
 * BENCH_FLEET_PODS (10000: the fleet simulation's scale, bench/fleet.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { cpuOf, installShipped, memoryOf, ROOT, startDaemon, type Daemon } from './shipped.ts'
import { findNginx, startNginx, type Nginx } from './nginx.ts'
import { constantRate } from './rate.ts'
import { findWrk, load, type Target, type Throughput } from './wrk.ts'

const env = (k: string, d: number) => Number(process.env[k] ?? d)
const DURATION = env('BENCH_DURATION_MS', 5000)
const CONCURRENCY = env('BENCH_CONCURRENCY', 32)
const ROUNDS = Math.max(1, env('BENCH_ROUNDS', 2))
const SOAK = env('BENCH_SOAK_REQUESTS', 100_000)
const IDLE_MS = env('BENCH_IDLE_MS', 10_000)
const STARTUP_RUNS = Math.max(1, env('BENCH_STARTUP_RUNS', 5))
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',')) : undefined
const on = (section: string) => !ONLY || ONLY.has(section)

const TOKEN = 'bench-token-value-0123456789'
const BODY = JSON.stringify({ ok: true, pad: 'x'.repeat(200) })

interface Row {
  target: string
  measured: string
  ratio: string
  pass: boolean | undefined
}
const rows: Row[] = []
const notes: string[] = []
const details: string[] = []
const fmt = (n: number, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : '—')
function target(t: string, measured: string, ratio: number | undefined, pass: boolean | undefined): void {
  rows.push({ target: t, measured, ratio: ratio === undefined ? '—' : fmt(ratio), pass })
}

/** The V8 flags the shipped bin adds (read from it), so the minimal proxy runs on equal terms. */
async function shippedV8Flags(): Promise<string[]> {
  const m = /SEMI_SPACE_MIB = (\d+)/.exec(await readFile(path.join(ROOT, 'bin', 'latchkey.js'), 'utf8'))
  return m ? [`--max-semi-space-size=${m[1]}`] : []
}

/** A bench/ script as a child process that prints `{"port":N}` when it listens. */
async function startScript(file: string, args: string[], nodeArgs: string[] = []): Promise<{ pid: number; port: number; stop: () => Promise<void> }> {
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, path.join(ROOT, 'bench', file), ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  const port = await new Promise<number>((resolve, reject) => {
    let buf = ''
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      buf += c
      const m = /\{"port":(\d+)\}/.exec(buf)
      if (m) resolve(Number(m[1]))
    })
    child.once('exit', (code) => reject(new Error(`${file} exited with ${code}`)))
  })
  return {
    pid: child.pid!,
    port,
    stop: async () => {
      child.kill('SIGTERM')
      const t = setTimeout(() => child.kill('SIGKILL'), 3_000)
      await exited
      clearTimeout(t)
    },
  }
}

interface Measured extends Throughput {
  /** Main-thread CPU per request, µs (undefined: not a process we read). */
  cpuUs?: number
}

/** Closed-loop throughput of each `paths` entry, in alternating rounds, summed per path. */
async function throughput(dir: string, paths: { name: string; target: Target; pid?: number }[]): Promise<Map<string, Measured>> {
  for (const p of paths) await load(dir, p.target, { durationMs: 1000, connections: CONCURRENCY }) // warm: JIT, pools
  const acc = new Map<string, { t: Throughput[]; cpu: number }>()
  for (let r = 0; r < ROUNDS; r++) {
    for (const p of r % 2 === 0 ? paths : [...paths].reverse()) {
      const c0 = p.pid ? await cpuOf(p.pid) : undefined
      const t = await load(dir, p.target, { durationMs: DURATION / ROUNDS, connections: CONCURRENCY })
      const c1 = p.pid ? await cpuOf(p.pid) : undefined
      const a = acc.get(p.name) ?? { t: [], cpu: 0 }
      a.t.push(t)
      if (c0 && c1) a.cpu += c1.main - c0.main
      acc.set(p.name, a)
    }
  }
  const out = new Map<string, Measured>()
  for (const p of paths) {
    const a = acc.get(p.name)!
    const requests = a.t.reduce((n, x) => n + x.requests, 0)
    const seconds = a.t.reduce((n, x) => n + x.seconds, 0)
    const med = (k: 'p50ms' | 'p99ms') => a.t.map((x) => x[k]).sort((x, y) => x - y)[Math.floor(a.t.length / 2)]!
    if (requests === 0) throw new Error(`${p.name}: no request succeeded`)
    out.set(p.name, { requests, seconds, errors: a.t.reduce((n, x) => n + x.errors, 0), rps: requests / seconds, p50ms: med('p50ms'), p99ms: med('p99ms'), ...(p.pid ? { cpuUs: (a.cpu / requests) * 1e6 } : {}) })
  }
  return out
}

function routeConfig(upstreamPort: number): Record<string, unknown> {
  return {
    providers: { dev: { type: 'env' } },
    credentials: { bench: { provider: 'dev', ref: 'BENCH_TOKEN', hosts: [`127.0.0.1:${upstreamPort}`], inject: { type: 'bearer' }, insecure: true } },
    routes: { up: { upstream: `http://127.0.0.1:${upstreamPort}` } },
  }
}

async function benchRequestPath(dir: string, bin: string, upstreamPort: number, nginxBin: string | undefined): Promise<void> {
  const origin = `http://127.0.0.1:${upstreamPort}`
  const lk = await startDaemon(bin, dir, routeConfig(upstreamPort), { BENCH_TOKEN: TOKEN })
  const minimal = await startScript('minimal-proxy.ts', [origin], await shippedV8Flags())
  let nginx: Nginx | undefined
  if (nginxBin) nginx = await startNginx(nginxBin, dir, { proxyTo: `127.0.0.1:${upstreamPort}`, authorization: `Bearer ${TOKEN}` })
  const at = (port: number) => `http://127.0.0.1:${port}`
  const lkPort = Number(new URL(lk.proxyUrl).port)
  try {
    const paths = [
      { name: 'direct to upstream', target: { connectTo: origin, requestTarget: '/' } },
      { name: 'minimal proxy, route', target: { connectTo: at(minimal.port), requestTarget: '/up/' }, pid: minimal.pid },
      { name: 'latchkey reverse route', target: { connectTo: lk.proxyUrl, requestTarget: '/up/' }, pid: lk.pid },
      { name: 'minimal proxy, forward', target: { connectTo: at(minimal.port), requestTarget: `${origin}/` }, pid: minimal.pid },
      { name: 'latchkey forward proxy', target: { connectTo: at(lkPort), requestTarget: `${origin}/` }, pid: lk.pid },
      ...(nginx ? [{ name: 'nginx 1 worker, route', target: { connectTo: at(nginx.port), requestTarget: '/up/' }, pid: nginx.pid }] : []),
    ]
    if (on('throughput')) {
      const m = await throughput(dir, paths)
      const g = (n: string) => m.get(n)!
      for (const [route, base] of [
        ['latchkey reverse route', 'minimal proxy, route'],
        ['latchkey forward proxy', 'minimal proxy, forward'],
      ] as const) {
        const l = g(route)
        const b = g(base)
        target(`${route}: throughput ≥ 0.95× minimal proxy`, `${fmt(l.rps, 0)} vs ${fmt(b.rps, 0)} req/s`, l.rps / b.rps, l.rps / b.rps >= 0.95)
        target(`${route}: main-thread CPU/request ≤ 1.1× minimal proxy`, `${fmt(l.cpuUs!, 1)} vs ${fmt(b.cpuUs!, 1)} µs`, l.cpuUs! / b.cpuUs!, l.cpuUs! / b.cpuUs! <= 1.1)
      }
      if (nginx) {
        const l = g('latchkey reverse route')
        const n = g('nginx 1 worker, route')
        target('latchkey reverse route vs nginx 1 worker (reference)', `${fmt(l.rps, 0)} vs ${fmt(n.rps, 0)} req/s; ${fmt(l.cpuUs!, 1)} vs ${fmt(n.cpuUs!, 1)} µs CPU/req`, l.rps / n.rps, undefined)
      } else target('latchkey reverse route vs nginx 1 worker (reference)', 'skipped: nginx not installed', undefined, undefined)
      const direct = g('direct to upstream')
      details.push(
        `Throughput, ${ROUNDS} rounds × ${fmt(DURATION / ROUNDS / 1000, 1)} s per row, ${CONCURRENCY} connections, ${findWrk() ? 'wrk -t1' : 'in-process generator (wrk not installed)'}:\n\n| path | requests | errors | req/s | ratio to direct | p50 ms | p99 ms | main-thread CPU µs/req |\n|---|---:|---:|---:|---:|---:|---:|---:|\n` +
          paths.map((p) => g(p.name)).map((x, i) => `| ${paths[i]!.name} | ${x.requests} | ${x.errors} | ${fmt(x.rps, 0)} | ${fmt(x.rps / direct.rps)} | ${fmt(x.p50ms)} | ${fmt(x.p99ms)} | ${x.cpuUs === undefined ? '—' : fmt(x.cpuUs, 1)} |`).join('\n'),
      )
      if (on('latency')) await benchLatency(origin, lk, g('latchkey reverse route').rps)
    } else if (on('latency')) {
      const t = await load(dir, paths[2]!.target, { durationMs: DURATION, connections: CONCURRENCY })
      await benchLatency(origin, lk, t.rps)
    }
  } finally {
    await Promise.allSettled([lk.stop(), minimal.stop(), nginx?.stop()])
  }
}

/** p99 at half of the route's measured maximum rate, direct and through the route, alternating. */
async function benchLatency(origin: string, lk: Daemon, maxRps: number): Promise<void> {
  const rate = Math.max(100, Math.floor(maxRps / 2))
  const opts = { rate, durationMs: DURATION, connections: CONCURRENCY }
  const direct = await constantRate(origin, '/', opts)
  const route = await constantRate(lk.proxyUrl, '/up/', opts)
  const added = route.p99ms - direct.p99ms
  target(`p99 added latency at half the max rate (${rate} req/s) ≤ 1.5 ms`, `${fmt(added)} ms (p99 ${fmt(route.p99ms)} vs direct ${fmt(direct.p99ms)})`, undefined, added <= 1.5)
  details.push(
    `Constant rate ${rate} req/s (half of the route's maximum), ${fmt(DURATION / 1000, 1)} s each, latency from each request's due time:\n\n| path | sent | errors | late sends | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|---:|\n` +
      [['direct to upstream', direct] as const, ['latchkey reverse route', route] as const].map(([n, r]) => `| ${n} | ${r.sent} | ${r.errors} | ${r.late} | ${fmt(r.p50ms)} | ${fmt(r.p99ms)} |`).join('\n'),
  )
}

async function benchInterceptRows(): Promise<void> {
  const { benchIntercept } = await import('./intercept.ts')
  const r = await benchIntercept({ durationMs: DURATION, concurrency: CONCURRENCY })
  const fwd = r.find((x) => x.name.startsWith('latchkey forward proxy'))
  const tun = r.find((x) => x.name.startsWith('latchkey intercepted tunnel'))
  if (fwd && tun) target('intercepted tunnel p50 ≤ 1.1× plain forward proxy (TLS upstream)', `${fmt(tun.p50ms)} vs ${fmt(fwd.p50ms)} ms`, tun.p50ms / fwd.p50ms, tun.p50ms / fwd.p50ms <= 1.1)
  details.push('Interception (in-process generator, TLS upstream):\n\n| path | req/s | p50 ms | p99 ms |\n|---|---:|---:|---:|\n' + r.map((x) => `| ${x.name} | ${fmt(x.rps, 0)} | ${fmt(x.p50ms)} | ${fmt(x.p99ms)} |`).join('\n'))
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN

/** The two configs the footprint targets name: an env provider and a file provider. */
async function plainConfigs(dir: string): Promise<{ name: string; config: Record<string, unknown>; env: Record<string, string> }[]> {
  await writeFile(path.join(dir, 'token'), 'file-secret-value-0123456789')
  const cred = (provider: string, ref: string) => ({ c: { provider, ref, hosts: ['api.example.com'], inject: { type: 'bearer' } } })
  return [
    { name: 'env', config: { providers: { p: { type: 'env' } }, credentials: cred('p', 'API_TOKEN') }, env: { API_TOKEN: 'env-secret-value-0123456789' } },
    { name: 'file', config: { providers: { p: { type: 'file', dir } }, credentials: cred('p', 'token') }, env: {} },
  ]
}

async function benchReady(dir: string, bin: string): Promise<void> {
  const lines: string[] = []
  // One uncounted start warms the disk cache.
  await (await startDaemon(bin, dir, (await plainConfigs(dir))[0]!.config, (await plainConfigs(dir))[0]!.env)).stop()
  let worstReady = 0
  let worstRss = 0
  for (const c of await plainConfigs(dir)) {
    const runs: { ready: number; cpu: number; rss: number }[] = []
    for (let i = 0; i < STARTUP_RUNS; i++) {
      const d = await startDaemon(bin, dir, c.config, c.env)
      const [cpu, mem] = [await cpuOf(d.pid), await memoryOf(d.pid)]
      runs.push({ ready: d.readyMs, cpu: cpu.total * 1000, rss: mem.rss })
      await d.stop()
    }
    const ready = median(runs.map((r) => r.ready))
    const rss = median(runs.map((r) => r.rss))
    worstReady = Math.max(worstReady, ready)
    worstRss = Math.max(worstRss, rss)
    lines.push(`| ${c.name} | ${fmt(ready, 0)} | ${fmt(Math.min(...runs.map((r) => r.ready)), 0)}–${fmt(Math.max(...runs.map((r) => r.ready)), 0)} | ${fmt(median(runs.map((r) => r.cpu)), 0)} | ${fmt(rss, 1)} |`)
  }
  // The image's launch path (deploy/docker/Dockerfile): node runs the bundle directly with the
  // young-generation cap in NODE_OPTIONS, so there is no re-exec (one bare Node start, ~50 ms).
  const entry = path.join(path.dirname(bin), '..', 'dist', 'cli', 'latchkey.js')
  const imageRuns: number[] = []
  for (let i = 0; i < STARTUP_RUNS; i++) {
    const c = (await plainConfigs(dir))[0]!
    const d = await startDaemon(entry, dir, c.config, { ...c.env, NODE_OPTIONS: '--max-semi-space-size=2', MALLOC_ARENA_MAX: '2' }, { nodeArgs: ['--enable-source-maps'] })
    imageRuns.push(d.readyMs)
    await d.stop()
  }
  lines.push(`| env, the image's entrypoint (no re-exec) | ${fmt(median(imageRuns), 0)} | ${fmt(Math.min(...imageRuns), 0)}–${fmt(Math.max(...imageRuns), 0)} | — | — |`)
  target('start → ready (/readyz 200), env/file config, as shipped ≤ 300 ms', `${fmt(worstReady, 0)} ms (median of the worse config, bin); ${fmt(median(imageRuns), 0)} ms (image entrypoint)`, worstReady / 300, worstReady <= 300)
  target('RSS at ready, env/file config, as shipped ≤ 72 MiB', `${fmt(worstRss, 1)} MiB`, worstRss / 72, worstRss <= 72)
  details.push(`Start-up, ${STARTUP_RUNS} runs per config (CPU: all threads' on-CPU time from spawn to ready, less disturbed by a busy machine than the wall time):\n\n| config | start → ready median ms | range ms | CPU to ready ms | RSS at ready MiB |\n|---|---:|---:|---:|---:|\n${lines.join('\n')}`)
}

async function benchIdle(dir: string, bin: string): Promise<void> {
  const c = (await plainConfigs(dir))[0]!
  const d = await startDaemon(bin, dir, c.config, c.env)
  try {
    await new Promise((r) => setTimeout(r, 1000))
    const c0 = await cpuOf(d.pid)
    await new Promise((r) => setTimeout(r, IDLE_MS))
    const c1 = await cpuOf(d.pid)
    const msPerS = ((c1.total - c0.total) * 1000) / (IDLE_MS / 1000)
    target('idle CPU, no traffic ≤ 0.5 ms/s', `${fmt(msPerS, 3)} ms/s over ${IDLE_MS / 1000} s`, msPerS / 0.5, msPerS <= 0.5)
  } finally {
    await d.stop()
  }
}

async function benchSoak(dir: string, bin: string, upstreamPort: number): Promise<void> {
  const lk = await startDaemon(bin, dir, routeConfig(upstreamPort), { BENCH_TOKEN: TOKEN })
  try {
    // Load in slices of a few seconds and read RSS after each, until N requests: RSS against the
    // request count, and the peak (VmHWM) covers what happens between two readings.
    const samples: { done: number; rss: number }[] = []
    let done = 0
    let errors = 0
    const t0 = performance.now()
    while (done < SOAK) {
      const r = await load(dir, { connectTo: lk.proxyUrl, requestTarget: '/up/' }, { durationMs: 2000, connections: CONCURRENCY })
      if (r.requests === 0) throw new Error('the route answered no request during the soak')
      done += r.requests
      errors += r.errors
      samples.push({ done, rss: (await memoryOf(lk.pid)).rss })
    }
    const total = performance.now() - t0
    await new Promise((res) => setTimeout(res, 2000))
    const end = await memoryOf(lk.pid)
    const after = end.rss
    const window = samples.filter((s) => s.done >= done * 0.2)
    const peak = Math.max(end.hwm, after)
    const lo = Math.min(...window.map((s) => s.rss))
    const hi = Math.max(...window.map((s) => s.rss))
    // ±: half the range over its midpoint.
    const spread = (hi - lo) / (hi + lo)
    const at = (q: number) => samples.find((s) => s.done >= done * q)?.rss ?? NaN
    const n = SOAK >= 1000 ? `${SOAK / 1000}k` : String(SOAK)
    target(`RSS during and after ${n} route requests at c${CONCURRENCY} ≤ 128 MiB`, `peak (VmHWM) ${fmt(peak, 1)}, after ${fmt(after, 1)} MiB`, peak / 128, peak <= 128)
    target(`RSS flat (±5 %) from 20 % to 100 % of the ${n} requests`, `${fmt(lo, 1)}–${fmt(hi, 1)} MiB (±${fmt(spread * 100, 1)} %)`, spread / 0.05, spread <= 0.05)
    details.push(
      `Soak: ${done} route requests (${errors} errors) in ${fmt(total / 1000, 1)} s; RSS MiB at each fifth:\n\n| 20 % | 40 % | 60 % | 80 % | 100 % | 2 s after |\n|---:|---:|---:|---:|---:|---:|\n| ${[0.2, 0.4, 0.6, 0.8, 1].map((q) => fmt(at(q), 1)).join(' | ')} | ${fmt(after, 1)} |`,
    )
    if (SOAK < 1_000_000) notes.push(`the soak ran ${SOAK} requests; BENCH_SOAK_REQUESTS=1000000 runs the full target`)
  } finally {
    await lk.stop()
  }
}

async function benchMicro(): Promise<void> {
  // In-process on the sources: the cost of the decision itself, without a network in between.
  const { createBroker } = await import('../src/daemon.ts')
  const sink = new Writable({ write: (_c, _e, cb) => cb() })
  const broker = createBroker({
    config: { log: { level: 'silent' }, providers: { dev: { type: 'env' } }, credentials: { micro: { provider: 'dev', ref: 'T', hosts: ['api.example.com', '*.svc.example.com'], inject: { type: 'bearer' } } } },
    env: { T: 'micro-token-0123456789' },
    logStream: sink,
    processMetrics: false,
  })
  const cred = broker.config.credentials.micro!
  await broker.cache.get(cred)
  const time = (fn: () => unknown, ops: number) => {
    for (let i = 0; i < 10_000; i++) fn()
    const t = process.hrtime.bigint()
    for (let i = 0; i < ops; i++) fn()
    return Number(process.hrtime.bigint() - t) / ops
  }
  const ns = time(() => {
    const c = broker.resolver.match('api.example.com', 443, true)
    return c && broker.cache.peek(c)
  }, 1_000_000)
  target('cache-hit decision (match + render) ≤ 1 µs', `${fmt(ns, 0)} ns`, ns / 1000, ns <= 1000)
}

/** The fleet simulation (virtual clock, no sockets) in its own process: its tables and plots go in the details, its targets in one row. */
async function benchFleet(): Promise<void> {
  const pods = env('BENCH_FLEET_PODS', 10_000)
  const child = spawn(process.execPath, [path.join(ROOT, 'bench', 'fleet.ts'), '--pods', String(pods)], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c))
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  const checks = out.split('\n').filter((l) => /^- (met|MISSED): /.test(l))
  if (checks.length === 0) throw new Error(`bench/fleet.ts exited ${code} with no targets`)
  const missed = checks.filter((l) => l.startsWith('- MISSED'))
  target(`fleet simulation, ${pods.toLocaleString('en-US')} pods × 5 credentials: every lifecycle target met`, `${checks.length - missed.length} of ${checks.length} met${missed.length ? `; missed: ${missed.map((l) => l.slice(10)).join('; ')}` : ''}`, undefined, missed.length === 0 && code === 0)
  details.push(`Fleet simulation (bench/fleet.ts, ${pods.toLocaleString('en-US')} pods):\n${out.trim()}`)
}

async function section(name: string, fn: () => Promise<void>): Promise<void> {
  if (!on(name)) return
  const t = performance.now()
  try {
    await fn()
  } catch (err) {
    target(`${name}`, `not measured: ${(err as Error).message.split('\n')[0]}`, undefined, undefined)
  }
  process.stderr.write(`bench: ${name} done in ${fmt((performance.now() - t) / 1000, 1)} s\n`)
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'latchkey-bench-'))
  const nginxBin = findNginx()
  let upstream: { port: number; stop: () => Promise<void> } | undefined
  try {
    const { bin, label } = await installShipped(dir)
    upstream = nginxBin ? await startNginx(nginxBin, dir, { upstream: true, body: BODY }) : await startScript('upstream.ts', [])
    const up = upstream
    await section('throughput', () => benchRequestPath(dir, bin, up.port, nginxBin))
    if (!on('throughput')) await section('latency', () => benchRequestPath(dir, bin, up.port, undefined))
    await section('intercept', benchInterceptRows)
    await section('idle', () => benchIdle(dir, bin))
    await section('ready', () => benchReady(dir, bin))
    await section('soak', () => benchSoak(dir, bin, up.port))
    await section('micro', benchMicro)
    await section('fleet', benchFleet)
    if (process.env.BENCH_PROVIDERS === '1') {
      const { benchStartup, startupTable } = await import('./startup.ts')
      details.push(`Start-up per provider type (sources, ${STARTUP_RUNS} runs each):\n\n${startupTable(await benchStartup({ runs: STARTUP_RUNS }))}`)
    }
    const { cpus, totalmem } = await import('node:os')
    process.stdout.write(
      `\nlatchkey bench — Node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), ${fmt(totalmem() / 2 ** 30, 1)} GiB, load average ${(await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')}\n` +
        `latchkey: ${label}; upstream: ${nginxBin ? 'nginx' : 'bench/upstream.ts'}; load: ${findWrk() ? 'wrk' : 'in-process generator'}\n\n` +
        '| target | measured | ratio | pass |\n|---|---|---:|:---:|\n' +
        rows.map((r) => `| ${r.target} | ${r.measured} | ${r.ratio} | ${r.pass === undefined ? '—' : r.pass ? 'pass' : 'FAIL'} |`).join('\n') +
        '\n\n' +
        (notes.length ? notes.map((n) => `Note: ${n}.`).join('\n') + '\n\n' : '') +
        details.join('\n\n') +
        '\n',
    )
  } finally {
    await upstream?.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
