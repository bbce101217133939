/**
 * `npm run bench`: measures, in one run, requests/s and p50/p99 latency at fixed
 * concurrency for direct-to-upstream (the baseline), a reverse route and the forward
 * proxy through a latchkey daemon running as a child process via the real bin; then a
 * micro-benchmark of the cache-hit injection path; then start-to-ready time and RSS per
 * provider type (`startup.ts`). Prints tables with ratios to the baseline. Everything runs
 * on 127.0.0.1.
 *
 * Options (env): BENCH_DURATION_MS (default 5000), BENCH_CONCURRENCY (default 32),
 * BENCH_STARTUP_RUNS (default 5).
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Writable } from 'node:stream'
import { freePort, getter, pool, proxyAgent, runLoad, type LoadResult } from './load.ts'
import { createBroker } from '../src/daemon.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const DURATION = Number(process.env.BENCH_DURATION_MS ?? 5000)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32)
const STARTUP_RUNS = Number(process.env.BENCH_STARTUP_RUNS ?? 5)

async function startUpstream(): Promise<{ server: http.Server; port: number }> {
  const body = Buffer.from(JSON.stringify({ ok: true, pad: 'x'.repeat(200) }))
  const server = http.createServer((req, res) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
    res.end(body)
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { server, port: (server.address() as AddressInfo).port }
}

async function startLatchkey(dir: string, upstreamPort: number): Promise<{ proxyUrl: string; stop: () => Promise<void> }> {
  // Fixed free ports and log level warn: the bench measures the proxy, not per-request log lines.
  const [port, adminPort] = [await freePort(), await freePort()]
  const config = {
    listen: `127.0.0.1:${port}`,
    admin: { listen: `127.0.0.1:${adminPort}` },
    log: { level: 'warn' },
    providers: { dev: { type: 'env' } },
    credentials: { bench: { provider: 'dev', ref: 'BENCH_TOKEN', hosts: [`127.0.0.1:${upstreamPort}`], inject: { type: 'bearer' }, insecure: true } },
    routes: { up: { upstream: `http://127.0.0.1:${upstreamPort}` } },
  }
  const file = path.join(dir, 'latchkey.json')
  await writeFile(file, JSON.stringify(config))
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'latchkey.js'), 'run', '-c', file], {
    env: { PATH: process.env.PATH, BENCH_TOKEN: 'bench-token-value-0123456789' },
    // stdout carries the audit records (on by default, one line per request): not for the terminal.
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  const deadline = Date.now() + 15_000
  for (;;) {
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error('latchkey did not become ready within 15 s')
    }
    const ready = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.status === 200, () => false)
    if (ready) break
    await new Promise((r) => setTimeout(r, 100))
  }
  return {
    proxyUrl: `http://127.0.0.1:${port}`,
    stop: async () => {
      child.kill('SIGTERM')
      await exited
    },
  }
}

async function microInjection(): Promise<{ name: string; nsPerOp: number; ops: number }[]> {
  const sink = new Writable({ write: (_c, _e, cb) => cb() })
  const broker = createBroker({
    config: {
      log: { level: 'silent' },
      providers: { dev: { type: 'env' } },
      credentials: { micro: { provider: 'dev', ref: 'T', hosts: ['api.example.com', '*.svc.example.com'], inject: { type: 'bearer' } } },
    },
    env: { T: 'micro-token-0123456789' },
    logStream: sink,
    processMetrics: false,
  })
  const cred = broker.config.credentials.micro!
  await broker.cache.get(cred)
  const results: { name: string; nsPerOp: number; ops: number }[] = []
  const measure = async (name: string, fn: () => unknown, ops: number) => {
    for (let i = 0; i < 10_000; i++) await fn() // warm-up
    const t = process.hrtime.bigint()
    for (let i = 0; i < ops; i++) await fn()
    results.push({ name, nsPerOp: Number(process.hrtime.bigint() - t) / ops, ops })
  }
  const syncMeasure = (name: string, fn: () => unknown, ops: number) => {
    for (let i = 0; i < 10_000; i++) fn()
    const t = process.hrtime.bigint()
    for (let i = 0; i < ops; i++) fn()
    results.push({ name, nsPerOp: Number(process.hrtime.bigint() - t) / ops, ops })
  }
  syncMeasure('match host (memoised, sync)', () => broker.resolver.match('a.svc.example.com', 443, true), 1_000_000)
  syncMeasure('cache hit → header value (sync peek: the request path)', () => broker.cache.peek(cred), 1_000_000)
  syncMeasure('match + peek (the whole injection decision)', () => {
    const c = broker.resolver.match('api.example.com', 443, true)
    return c && broker.cache.peek(c)
  }, 1_000_000)
  await measure('cache get (async, a miss-capable lookup)', () => broker.cache.get(cred), 500_000)
  return results
}

function table(rows: LoadResult[], baseline: LoadResult): string {
  const head = '| path | requests | errors | req/s | ratio to direct | p50 ms | p99 ms | p50 added ms |\n|---|---:|---:|---:|---:|---:|---:|---:|'
  const lines = rows.map(
    (r) =>
      `| ${r.name} | ${r.requests} | ${r.errors} | ${r.rps.toFixed(0)} | ${(r.rps / baseline.rps).toFixed(2)} | ${r.p50ms.toFixed(2)} | ${r.p99ms.toFixed(2)} | ${(r.p50ms - baseline.p50ms).toFixed(2)} |`,
  )
  return [head, ...lines].join('\n')
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'latchkey-bench-'))
  const up = await startUpstream()
  const lk = await startLatchkey(dir, up.port)
  const origin = `http://127.0.0.1:${up.port}`
  const opts = { durationMs: DURATION, concurrency: CONCURRENCY }
  try {
    // Warm every path once so connection set-up is not measured.
    const direct = pool(origin, CONCURRENCY)
    const route = pool(lk.proxyUrl, CONCURRENCY)
    const forward = proxyAgent(lk.proxyUrl, CONCURRENCY)
    await runLoad('warm', getter(direct, origin, '/'), { durationMs: 500, concurrency: CONCURRENCY })
    await runLoad('warm', getter(route, lk.proxyUrl, '/up/'), { durationMs: 500, concurrency: CONCURRENCY })
    await runLoad('warm', getter(forward, origin, '/'), { durationMs: 500, concurrency: CONCURRENCY })
    const baseline = await runLoad('direct to upstream (baseline)', getter(direct, origin, '/'), opts)
    const viaRoute = await runLoad('latchkey reverse route', getter(route, lk.proxyUrl, '/up/'), opts)
    const viaForward = await runLoad('latchkey forward proxy', getter(forward, origin, '/'), opts)
    const rows = [baseline, viaRoute, viaForward]
    let interceptRows = ''
    try {
      const mod = (await import('./intercept.ts')) as { benchIntercept?: (o: { durationMs: number; concurrency: number }) => Promise<Array<{ name: string; rps: number; p50ms: number; p99ms: number }>> }
      if (mod.benchIntercept) {
        const r = await mod.benchIntercept(opts)
        const base = r[0]
        interceptRows =
          '\n\nHTTPS (TLS upstream), ratios to HTTPS direct:\n\n| path | req/s | ratio to direct | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|\n' +
          r.map((x) => `| ${x.name} | ${x.rps.toFixed(0)} | ${base && !x.name.startsWith('certIssueMs') ? (x.rps / base.rps).toFixed(2) : '—'} | ${x.p50ms.toFixed(2)} | ${x.p99ms.toFixed(2)} |`).join('\n')
      }
    } catch (err) {
      interceptRows = `\n\n(interception bench not run: ${(err as Error).message})`
    }
    await Promise.all([direct.close(), route.close(), forward.close()])
    const micro = await microInjection()
    process.stdout.write(`\nlatchkey bench — ${DURATION} ms per row, concurrency ${CONCURRENCY}, Node ${process.version}, 127.0.0.1\n\n`)
    process.stdout.write(table(rows, baseline) + interceptRows + '\n\n')
    process.stdout.write('| micro-benchmark (in-process) | ns/op | ops |\n|---|---:|---:|\n' + micro.map((m) => `| ${m.name} | ${m.nsPerOp.toFixed(0)} | ${m.ops} |`).join('\n') + '\n')
    // Last, so the proxy rows above are not measured next to a burst of SDK start-ups.
    const { benchStartup, startupTable } = await import('./startup.ts')
    const startup = await benchStartup({ runs: STARTUP_RUNS })
    process.stdout.write(`\nstart-up per provider (${STARTUP_RUNS} runs each, real bin against the local protocol servers), ratios to env:\n\n${startupTable(startup)}\n`)
  } finally {
    await lk.stop()
    up.server.close()
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
