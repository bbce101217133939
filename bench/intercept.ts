/**
 * Interception overhead, measured in one run against one local HTTPS upstream:
 * - HTTPS straight to the upstream (baseline for the client's own TLS cost);
 * - the plain forward proxy (`http://` absolute form; latchkey makes the TLS connection);
 * - an intercepted tunnel (`HTTPS_PROXY`, the client trusts latchkey's CA, keep-alive);
 * - the time to issue a leaf certificate: the latency a new host adds to its first handshake.
 *
 * The daemon runs as shipped (bench/shipped.ts) in a child process, so the load generator
 * does not share its event loop. `benchIntercept` is called by `bench/run.ts`;
 * `node bench/intercept.ts` runs it alone.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { rootCertificates } from 'node:tls'
import { fileURLToPath } from 'node:url'
import { Pool, ProxyAgent } from 'undici'
import { CertificateAuthority } from '../src/intercept/certificate-authority.ts'
import { LeafCache } from '../src/intercept/leaf-cache.ts'
import { getter, runLoad, type LoadResult } from './load.ts'
import { installShipped, startDaemon } from './shipped.ts'

const SELF = fileURLToPath(import.meta.url)

export interface BenchRow {
  name: string
  rps: number
  p50ms: number
  p99ms: number
}

export async function benchIntercept(opts: { durationMs: number; concurrency: number }): Promise<BenchRow[]> {
  const dir = await mkdtemp(path.join(tmpdir(), 'latchkey-bench-intercept-'))
  const upstreamCa = await CertificateAuthority.create({ commonName: 'bench upstream CA' })
  const leaf = await upstreamCa.issue(['localhost'])
  const body = Buffer.from(JSON.stringify({ ok: true, pad: 'x'.repeat(200) }))
  const server = https.createServer({ cert: leaf.cert, key: leaf.key }, (req, res) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
    res.end(body)
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  await writeFile(path.join(dir, 'upstream-ca.pem'), upstreamCa.certPem)
  const config = {
      upstream: { caFile: path.join(dir, 'upstream-ca.pem') },
      intercept: { enabled: true, caDir: path.join(dir, 'ca') },
      providers: { dev: { type: 'env' } },
      credentials: { bench: { provider: 'dev', ref: 'BENCH_TOKEN', hosts: [`localhost:${port}`], inject: { type: 'bearer' } } },
  }
  const { bin } = await installShipped(dir)
  const daemon = await startDaemon(bin, dir, config, { BENCH_TOKEN: 'bench-token-value-0123456789' })
  const origin = `https://localhost:${port}`
  const latchkeyCa = await readFile(path.join(dir, 'ca', 'ca.pem'), 'utf8')
  const direct = new Pool(origin, { connections: opts.concurrency, connect: { ca: [...rootCertificates, upstreamCa.certPem] } })
  const forward = new ProxyAgent({ uri: daemon.proxyUrl, connections: opts.concurrency })
  const tunnel = new ProxyAgent({ uri: daemon.proxyUrl, connections: opts.concurrency, requestTls: { ca: [latchkeyCa] } })
  try {
    const plainOrigin = `http://localhost:${port}` // absolute form; latchkey upgrades to TLS for the credentialed host
    // The daemon child's JIT needs a few thousand requests per path before its rate settles:
    // two warm rounds, so neither latchkey row is measured cold.
    const warm = { durationMs: Math.min(1500, opts.durationMs), concurrency: opts.concurrency }
    for (let round = 0; round < 2; round++) {
      await runLoad('warm', getter(direct, origin, '/'), warm)
      await runLoad('warm', getter(forward, plainOrigin, '/'), warm)
      await runLoad('warm', getter(tunnel, origin, '/'), warm)
    }
    // Two processes share the machine: a path measured right after another is disturbed by
    // what the previous one left (GC, pools). The latchkey paths are measured in alternating
    // slices and their slices combined; the baseline runs first, in one piece.
    const rows: BenchRow[] = []
    const baseline = await runLoad('HTTPS direct to upstream (baseline)', getter(direct, origin, '/'), opts)
    rows.push({ name: `${baseline.name} [${baseline.requests} requests]`, rps: baseline.rps, p50ms: baseline.p50ms, p99ms: baseline.p99ms })
    const paths = [
      { name: 'latchkey forward proxy (http:// absolute form, TLS upstream)', send: getter(forward, plainOrigin, '/'), slices: [] as LoadResult[] },
      { name: 'latchkey intercepted tunnel (HTTPS_PROXY, keep-alive)', send: getter(tunnel, origin, '/'), slices: [] as LoadResult[] },
    ]
    const SLICES = 4
    for (let i = 0; i < SLICES; i++) {
      for (const p of i % 2 === 0 ? paths : [...paths].reverse()) p.slices.push(await runLoad(p.name, p.send, { ...opts, durationMs: opts.durationMs / SLICES }))
    }
    for (const p of paths) {
      const requests = p.slices.reduce((n, r) => n + r.requests, 0)
      const errors = p.slices.reduce((n, r) => n + r.errors, 0)
      if (errors > 0) throw new Error(`${p.name}: ${errors} failed requests`)
      rows.push({ name: `${p.name} [${requests} requests]`, rps: p.slices.reduce((n, r) => n + r.rps, 0) / SLICES, p50ms: median(p.slices.map((r) => r.p50ms)), p99ms: median(p.slices.map((r) => r.p99ms)) })
    }
    rows.push(await leafIssue(200))
    return rows
  } finally {
    await Promise.allSettled([direct.close(), forward.close(), tunnel.close()])
    await daemon.stop()
    server.closeAllConnections()
    await new Promise((r) => server.close(r))
    await rm(dir, { recursive: true, force: true })
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2
}

/** Mean and percentiles of issuing one leaf (key pair, signature, TLS context): added latency for a new host. */
async function leafIssue(n: number): Promise<BenchRow> {
  const ca = await CertificateAuthority.create()
  const leaves = new LeafCache({ ca, leafTtlMs: 86_400_000, max: n + 10 })
  for (let i = 0; i < 10; i++) await leaves.get(`warm-${i}.bench.test`)
  const times: number[] = []
  for (let i = 0; i < n; i++) {
    const t = performance.now()
    await leaves.get(`host-${i}.bench.test`)
    times.push(performance.now() - t)
  }
  const mean = times.reduce((a, b) => a + b, 0) / n
  times.sort((a, b) => a - b)
  return { name: `certIssueMs: leaf issue for a new host (mean ${mean.toFixed(2)} ms over ${n})`, rps: 1000 / mean, p50ms: times[Math.floor(n * 0.5)] as number, p99ms: times[Math.floor(n * 0.99)] as number }
}

if (process.argv[1] === SELF) {
  {
    const rows = await benchIntercept({ durationMs: Number(process.env.BENCH_DURATION_MS ?? 5000), concurrency: Number(process.env.BENCH_CONCURRENCY ?? 32) })
    const base = rows[0] as BenchRow
    process.stdout.write('| path | req/s | ratio to direct | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|\n')
    for (const r of rows) process.stdout.write(`| ${r.name} | ${r.rps.toFixed(0)} | ${(r.rps / base.rps).toFixed(2)} | ${r.p50ms.toFixed(2)} | ${r.p99ms.toFixed(2)} |\n`)
  }
}
