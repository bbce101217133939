/**
 * Start-up cost per provider type: the time from spawning `latchkey run -c FILE` (the real
 * bin, this process's Node) to the first 200 from `/readyz` (config loaded, the provider's
 * SDK imported, one credential fetched from the repo's local protocol servers), and the
 * child's resident memory at that moment (`VmRSS`, and the peak `VmHWM`, from
 * `/proc/PID/status`). The `env` provider, which loads no SDK, is the baseline measured in
 * the same run; the table shows each median and its ratio to env's.
 *
 * `benchStartup` is called by `bench/run.ts`; `node bench/startup.ts` runs it alone.
 * Options (env): BENCH_STARTUP_RUNS (default 5, at most 20) runs per provider, after one
 * uncounted warm-up run. Linux only (reads /proc).
 */
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { memoryOf, startDaemon } from './shipped.ts'
import { createTestCa } from '../test/helpers/test-ca.ts'
import { startAwsServer } from '../test/servers/aws-server.ts'
import { startAzureServer } from '../test/servers/azure-server.ts'
import { startGcpServer } from '../test/servers/gcp-server.ts'
import { startVaultServer } from '../test/servers/vault-server.ts'

const SELF = fileURLToPath(import.meta.url)
const BIN = path.join(path.dirname(SELF), '..', 'bin', 'latchkey.js')
const READY_TIMEOUT_MS = 20_000

export interface StartupRow {
  provider: string
  runs: number
  readyMs: { median: number; min: number; max: number }
  rssMiB: number
  hwmMiB: number
}

interface Setup {
  provider: Record<string, unknown>
  ref: string
  field?: string
  env: Record<string, string>
}

/** One spawn → ready → SIGTERM cycle. `children` lets the caller kill a child left by a failure. */
async function runOnce(dir: string, s: Setup, children: Set<ChildProcess>): Promise<{ readyMs: number; rss: number; hwm: number }> {
  const config = { providers: { p: s.provider }, credentials: { c: { provider: 'p', ref: s.ref, ...(s.field ? { field: s.field } : {}), hosts: ['api.example.com'], inject: { type: 'bearer' } } } }
  const d = await startDaemon(BIN, dir, config, { NO_PROXY: '127.0.0.1,localhost', ...s.env }, { timeoutMs: READY_TIMEOUT_MS })
  children.add(d.child)
  try {
    return { readyMs: d.readyMs, ...(await memoryOf(d.pid)) }
  } finally {
    await d.stop()
    children.delete(d.child)
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN

/** Measure every provider type `runs` times (bounded to 1..20). */
export async function benchStartup(opts: { runs: number }): Promise<StartupRow[]> {
  const runs = Math.max(1, Math.min(20, Math.floor(opts.runs)))
  const dir = await mkdtemp(path.join(tmpdir(), 'latchkey-bench-startup-'))
  const children = new Set<ChildProcess>()
  const ca = await createTestCa()
  const caFile = path.join(dir, 'ca.pem')
  await writeFile(caFile, ca.caPem)
  await writeFile(path.join(dir, 'token'), 'file-secret-value-0123456789')
  const vault = await startVaultServer({ tls: await ca.issue(['127.0.0.1']) })
  const aws = await startAwsServer()
  const kv = await startAzureServer({ tls: await ca.issue(['127.0.0.1']) })
  const sm = await startGcpServer({ tls: await ca.issue(['127.0.0.1']) })
  try {
    vault.setSecret('secret/app', { token: 'vault-secret-value-0123456789' })
    aws.setSecret('prod/app', 'aws-secret-value-0123456789')
    kv.setSecret('api-token', 'azure-secret-value-0123456789')
    sm.setSecret('api-token', 'gcp-secret-value-0123456789')
    await writeFile(path.join(dir, 'subject-token'), sm.subjectToken)
    await writeFile(path.join(dir, 'credentials.json'), sm.externalAccountJson(path.join(dir, 'subject-token')))
    const setups: Record<string, Setup> = {
      env: { provider: { type: 'env' }, ref: 'API_TOKEN', env: { API_TOKEN: 'env-secret-value-0123456789' } },
      file: { provider: { type: 'file', dir }, ref: 'token', env: {} },
      vault: { provider: { type: 'vault', address: vault.url, caFile, auth: { method: 'token', token: vault.rootToken } }, ref: 'secret/data/app', field: 'token', env: {} },
      aws: {
        provider: { type: 'aws', region: aws.region, endpoint: aws.url },
        ref: 'prod/app',
        env: { AWS_ACCESS_KEY_ID: aws.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: aws.credentials.secretAccessKey, AWS_EC2_METADATA_DISABLED: 'true' },
      },
      azure: {
        provider: { type: 'azure', vaultUrl: kv.vaultUrl, caFile, disableChallengeResourceVerification: true },
        ref: 'api-token',
        env: { IDENTITY_ENDPOINT: kv.identityEndpoint, IDENTITY_HEADER: kv.identityHeader },
      },
      gcp: {
        provider: { type: 'gcp', apiEndpoint: '127.0.0.1', port: sm.port, credentialsFile: path.join(dir, 'credentials.json'), caFile },
        ref: 'api-token',
        env: { GOOGLE_CLOUD_PROJECT: sm.projectId },
      },
    }
    // One uncounted run warms the disk cache for Node and the bin.
    await runOnce(dir, setups.env!, children)
    const rows: StartupRow[] = []
    for (const [provider, s] of Object.entries(setups)) {
      const results = []
      for (let i = 0; i < runs; i++) results.push(await runOnce(dir, s, children))
      const ready = results.map((x) => x.readyMs)
      rows.push({
        provider,
        runs,
        readyMs: { median: median(ready), min: Math.min(...ready), max: Math.max(...ready) },
        rssMiB: median(results.map((x) => x.rss)),
        hwmMiB: median(results.map((x) => x.hwm)),
      })
    }
    return rows
  } finally {
    for (const c of children) c.kill('SIGKILL')
    await Promise.all([vault.close(), aws.close(), kv.close(), sm.close()])
    await rm(dir, { recursive: true, force: true })
  }
}

/** The markdown table, ratios against the `env` row of the same run. */
export function startupTable(rows: StartupRow[]): string {
  const base = rows.find((r) => r.provider === 'env')
  const ratio = (v: number, b: number | undefined) => (b ? (v / b).toFixed(2) : '—')
  const head =
    '| provider | start → ready median ms | range ms | ratio to env | RSS at ready MiB | ratio to env | peak RSS (VmHWM) MiB |\n|---|---:|---:|---:|---:|---:|---:|'
  const lines = rows.map(
    (r) =>
      `| ${r.provider} | ${r.readyMs.median.toFixed(0)} | ${r.readyMs.min.toFixed(0)}–${r.readyMs.max.toFixed(0)} | ${ratio(r.readyMs.median, base?.readyMs.median)} | ${r.rssMiB.toFixed(1)} | ${ratio(r.rssMiB, base?.rssMiB)} | ${r.hwmMiB.toFixed(1)} |`,
  )
  return [head, ...lines].join('\n')
}

if (process.argv[1] === SELF) {
  const runs = Number(process.env.BENCH_STARTUP_RUNS ?? 5)
  const rows = await benchStartup({ runs })
  process.stdout.write(`\nlatchkey start-up — ${rows[0]?.runs ?? runs} runs per provider, Node ${process.version}, local protocol servers on 127.0.0.1\n\n${startupTable(rows)}\n`)
}
