/**
 * `node bench/policy-audit.ts`: the per-request cost of the audit record and of the method/path
 * rules. A latchkey daemon (child process, the real bin) is started four times — audit off/on
 * (stdout sink, to /dev/null) × no rules / three rules — and `wrk` drives a reverse route to a
 * local upstream for each. Prints requests/s and latency per variant, and the difference in
 * µs/request against the variant with neither; then the two costs alone, in-process (on a
 * shared machine the wrk numbers are noisy, the in-process ones much less).
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
import { Writable } from 'node:stream'
import { createAuditSink, type AuditRecord } from '../src/observe/audit.ts'
import { normalizeRequestPath } from '../src/policy/request-path.ts'
import { compileRules, decide, type RuleProblem } from '../src/policy/rules.ts'
import { SecretValue } from '../src/providers/secret-value.ts'
import { Scrubber } from '../src/redact/scrubber.ts'
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
        const p50 = /^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? '?'
        const p99 = /^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? '?'
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

/** ns per call of `fn`, best of five runs of `n` calls (a busy machine inflates the others). */
function nsPerOp(n: number, fn: (i: number) => void): number {
  let best = Infinity
  for (let r = 0; r < 5; r++) {
    const t = process.hrtime.bigint()
    for (let i = 0; i < n; i++) fn(i)
    best = Math.min(best, Number(process.hrtime.bigint() - t) / n)
  }
  return best
}

/** The two costs on their own, in-process: the policy check and one audit record (stringify, scrub, write). */
async function micro(): Promise<void> {
  const problems: RuleProblem[] = []
  const rules = compileRules(RULES, 'allow', problems)
  let sink = 0
  const policy = (p: string): number =>
    nsPerOp(100_000, () => {
      const n = normalizeRequestPath(p)
      if (n.ok && decide(rules, 'GET', n.path).allowed) sink++
    })
  const typical = policy('/api/v1/items/42?q=1')
  const encoded = policy('/api/v1/items/%7Eme/./x?y')
  const long = policy('/api/' + 'seg/'.repeat(30) + 'end')
  const scrubber = new Scrubber()
  scrubber.set('bench', ['bench-token-value-0123456789'])
  const audit = await createAuditSink({ sink: 'stdout', sampling: 1 }, { scrub: (t) => scrubber.scrub(t), stdout: new Writable({ write: (_c, _e, cb) => cb() }), onError: () => undefined })
  const secret = new SecretValue('bench-token-value-0123456789', '7')
  const record = (i: number): AuditRecord => ({
    credential: 'bench', provider: 'dev', version: secret.version, fingerprint: secret.fingerprint(), host: '127.0.0.1', port: 8080, method: 'GET', path: '/api/v1/items/42', rule: 0,
    status: 200, outcome: 'injected', code: undefined, durationMs: i % 100, bytesIn: 0, bytesOut: 230, traceparent: undefined,
  })
  const write = nsPerOp(100_000, (i) => audit.write(record(i)))
  console.log(`\nin-process, best of 5 (checksum ${sink > 0 ? 'ok' : '0'})`)
  console.log('| step | ns/request |')
  console.log('|---|---|')
  console.log(`| policy: normalise + decide, 3 rules, /api/v1/items/42?q=1 | ${typical.toFixed(0)} |`)
  console.log(`| policy: the same, /api/v1/items/%7Eme/./x?y | ${encoded.toFixed(0)} |`)
  console.log(`| policy: the same, a 32-segment path | ${long.toFixed(0)} |`)
  console.log(`| audit: build + stringify + scrub + write one record | ${write.toFixed(0)} |`)
}

await main()
await micro()
