/**
 * `node bench/policy-audit.ts`: the per-request cost of the audit record and of the method/path
 * rules. A latchkey daemon (child process, the real bin) is started four times — audit off/on
 * (stdout sink, to /dev/null) × no rules / three rules — and `wrk` drives a reverse route to a
 * local upstream for each. Prints requests/s and latency per variant, and the difference in
 * µs/request against the variant with neither.
 *
 * Options (env): BENCH_DURATION_S (default 5), BENCH_CONNECTIONS (default 16).
 */
import { execFile, spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { freePort } from './load.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const DURATION = Number(process.env.BENCH_DURATION_S ?? 5)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16)
const run = promisify(execFile)

const RULES = [
  { methods: ['POST'], paths: ['/admin/*/write'] },
  { methods: ['HEAD'], paths: ['/health'] },
  { methods: ['GET', 'HEAD'], paths: ['/api/**'] },
]

async function main(): Promise<void> {
  const body = Buffer.from(JSON.stringify({ ok: true, pad: 'x'.repeat(200) }))
  const upstream = http.createServer((req, res) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
    res.end(body)
  })
  upstream.keepAliveTimeout = 60_000
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
  const upPort = (upstream.address() as AddressInfo).port
  const dir = await mkdtemp(path.join(tmpdir(), 'latchkey-bench-policy-'))
  const rows: Array<{ name: string; rps: number; p50: string; p99: string }> = []
  try {
    for (const [audit, rules] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      const [port, adminPort] = [await freePort(), await freePort()]
      const config = {
        listen: `127.0.0.1:${port}`,
        admin: { listen: `127.0.0.1:${adminPort}` },
        log: { level: 'warn' },
        audit: { enabled: audit },
        providers: { dev: { type: 'env' } },
        credentials: { bench: { provider: 'dev', ref: 'BENCH_TOKEN', hosts: [`127.0.0.1:${upPort}`], inject: { type: 'bearer' }, insecure: true, ...(rules ? { allow: RULES } : {}) } },
        routes: { up: { upstream: `http://127.0.0.1:${upPort}` } },
      }
      const file = path.join(dir, 'latchkey.json')
      await writeFile(file, JSON.stringify(config))
      const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'latchkey.js'), 'run', '-c', file], {
        env: { PATH: process.env.PATH, BENCH_TOKEN: 'bench-token-value-0123456789' },
        stdio: ['ignore', 'ignore', 'inherit'],
      })
      const exited = new Promise<void>((r) => child.once('exit', () => r()))
      try {
        for (let i = 0; ; i++) {
          if (i > 150) throw new Error('latchkey did not become ready')
          if (await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.status === 200, () => false)) break
          await new Promise((r) => setTimeout(r, 100))
        }
        const url = `http://127.0.0.1:${port}/up/api/v1/items/42?q=1`
        await run('wrk', ['-t1', `-c${CONNECTIONS}`, '-d1s', url]) // warm-up
        const out = (await run('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${DURATION}s`, '--latency', url])).stdout
        const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1])
        const p50 = /50%\s+(\S+)/.exec(out)?.[1] ?? '?'
        const p99 = /99%\s+(\S+)/.exec(out)?.[1] ?? '?'
        rows.push({ name: `audit ${audit ? 'on ' : 'off'}, ${rules ? '3 rules' : 'no rules'}`, rps, p50, p99 })
      } finally {
        child.kill('SIGTERM')
        await exited
      }
    }
  } finally {
    upstream.close()
    await rm(dir, { recursive: true, force: true })
  }
  const base = rows[0] as (typeof rows)[number]
  console.log(`route, wrk -t1 -c${CONNECTIONS} -d${DURATION}s, GET /up/api/v1/items/42?q=1`)
  console.log('| variant | req/s | p50 | p99 | µs/request vs. neither |')
  console.log('|---|---|---|---|---|')
  for (const r of rows) console.log(`| ${r.name} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r === base ? '—' : ((1e6 / r.rps - 1e6 / base.rps) >= 0 ? '+' : '') + (1e6 / r.rps - 1e6 / base.rps).toFixed(1)} |`)
}

await main()
