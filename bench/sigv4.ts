/**
 * `node bench/sigv4.ts`: the cost of `inject.type: aws-sigv4`.
 * - Signing alone (`SigV4Signer.plan` + `sign`, the work the step adds to a request): µs per
 *   request for a GET and for an S3 PUT sent `UNSIGNED-PAYLOAD`, and for a 64 KiB body hashed
 *   for a service that needs it.
 * - Requests/s and latency through a latchkey daemon (child process, the real bin) on a route to
 *   a local upstream that drains the request: a bearer credential against the same with aws-sigv4.
 * - A 200 MiB streamed PUT through the daemon: its peak RSS over the RSS before, for a bearer
 *   credential (the baseline: what Node's streaming costs) and for aws-sigv4.
 * Everything runs on 127.0.0.1.
 */
import { spawn } from 'node:child_process'
import { createHash, createHmac, createSecretKey } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { Agent, request } from 'undici'
import { SigV4Signer } from '../src/mint/sigv4.ts'
import { freePort, getter, pool, runLoad } from './load.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const DURATION = Number(process.env.BENCH_DURATION_MS ?? 5000)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32)
const KEYS = { accessKeyId: 'AKIABENCH00000000001', secretAccessKey: 'bench-secret-access-key-000000000000000', sessionToken: 'bench-session-token' }

async function signing(): Promise<void> {
  const signer = new SigV4Signer({ region: 'eu-west-1' })
  const cases: Array<[string, string, string, Record<string, string>, Buffer | undefined]> = [
    ['GET object', 'GET', 'https://s3.eu-west-1.amazonaws.com/bucket/dir/key.parquet', { accept: '*/*', 'user-agent': 'bench' }, undefined],
    ['PUT UNSIGNED-PAYLOAD', 'PUT', 'https://s3.eu-west-1.amazonaws.com/bucket/dir/key.parquet', { 'content-length': '104857600', 'content-type': 'application/octet-stream', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, undefined],
    ['POST 64 KiB hashed (sqs)', 'POST', 'https://sqs.eu-west-1.amazonaws.com/', { 'content-length': '65536', 'content-type': 'application/x-amz-json-1.0' }, Buffer.alloc(65536, 120)],
  ]
  console.log('\nSigning alone (plan + sign), µs per request')
  console.log('| request | µs/op |\n|---|---|')
  for (const [name, method, u, headers, body] of cases) {
    const url = new URL(u)
    const run = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const plan = signer.plan(url, headers)
        await signer.sign({ method, url, headers, plan, body, keys: KEYS })
      }
    }
    await run(2000)
    const n = 20_000
    const t0 = performance.now()
    await run(n)
    console.log(`| ${name} | ${(((performance.now() - t0) * 1000) / n).toFixed(1)} |`)
  }
  // Calibration on this machine: the bare node:crypto calls of one signature once the SDK has
  // cached the day's signing key (its cache key HMAC, the canonical request hash, the signature
  // HMAC), keys as KeyObjects as the signer's Sha256 makes them.
  const n = 20_000
  const signingKey = createHmac('sha256', `AWS4${KEYS.secretAccessKey}`).update('20260101').digest()
  const t0 = performance.now()
  for (let i = 0; i < n; i++) {
    createHmac('sha256', createSecretKey(Buffer.from(KEYS.secretAccessKey))).update(KEYS.accessKeyId).digest()
    createHash('sha256').update('GET\n/bucket/dir/key.parquet\n\nhost:s3.eu-west-1.amazonaws.com\n').digest('hex')
    createHmac('sha256', createSecretKey(signingKey)).update('AWS4-HMAC-SHA256\n20260101T000000Z\n...').digest('hex')
  }
  console.log(`| (calibration: the 3 bare node:crypto calls per signature) | ${(((performance.now() - t0) * 1000) / n).toFixed(1)} |`)
}

async function drainingUpstream(): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => res.writeHead(200, { 'content-length': '2' }).end('ok'))
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { server, port: (server.address() as AddressInfo).port }
}

async function startDaemon(dir: string, name: string, inject: unknown, upstreamPort: number) {
  // Fixed free ports and log level warn, as bench/run.ts: the bench measures the proxy, not log lines.
  const [port, adminPort] = [await freePort(), await freePort()]
  const file = path.join(dir, `${name}.json`)
  await writeFile(
    file,
    JSON.stringify({
      listen: `127.0.0.1:${port}`,
      admin: { listen: `127.0.0.1:${adminPort}` },
      log: { level: 'warn' },
      providers: { files: { type: 'file', dir } },
      credentials: { up: { provider: 'files', ref: 'keys.json', hosts: [`127.0.0.1:${upstreamPort}`], insecure: true, inject } },
      routes: { up: { upstream: `http://127.0.0.1:${upstreamPort}` } },
    }),
  )
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'latchkey.js'), 'run', '-c', file], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'ignore', 'inherit'] })
  const deadline = Date.now() + 15_000
  for (;;) {
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error('latchkey did not become ready within 15 s')
    }
    if (await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.status === 200, () => false)) break
    await new Promise((r) => setTimeout(r, 100))
  }
  const proxyUrl = `http://127.0.0.1:${port}`
  const memory = async () => {
    const status = await readFile(`/proc/${child.pid}/status`, 'utf8')
    const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) * 1024
    return { rss: kib('VmRSS'), peak: kib('VmHWM') }
  }
  return {
    proxyUrl,
    memory,
    stop: () =>
      new Promise<void>((r) => {
        child.once('close', () => r())
        child.kill('SIGTERM')
      }),
  }
}

async function throughDaemon(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'latchkey-bench-sigv4-'))
  await writeFile(path.join(dir, 'keys.json'), JSON.stringify(KEYS))
  const up = await drainingUpstream()
  const variants: Array<[string, unknown]> = [
    ['bearer', { type: 'bearer' }],
    ['aws-sigv4 (s3)', { type: 'aws-sigv4', region: 'us-east-1', service: 's3' }],
  ]
  const rows: string[] = []
  const mem: string[] = []
  try {
    for (const [name, inject] of variants) {
      // The bearer variant sends the whole JSON as a token: fine for a draining upstream.
      const d = await startDaemon(dir, name.replace(/\W+/g, '-'), inject, up.port)
      try {
        const p = pool(d.proxyUrl, CONCURRENCY)
        const r = await runLoad(name, getter(p, d.proxyUrl, '/up/bucket/key'), { durationMs: DURATION, concurrency: CONCURRENCY })
        await p.close()
        rows.push(`| ${name} | ${Math.round(r.rps)} | ${r.p50ms.toFixed(2)} | ${r.p99ms.toFixed(2)} | ${r.errors} |`)
        const agent = new Agent()
        const warm = await request(`${d.proxyUrl}/up/bucket/warm`, { dispatcher: agent, method: 'PUT', body: 'warm' })
        await warm.body.dump()
        const before = await d.memory()
        const chunk = Buffer.alloc(1024 * 1024, 7)
        const n = 200
        const body = Readable.from((function* () {
          for (let i = 0; i < n; i++) yield chunk
        })())
        const t0 = performance.now()
        const put = await request(`${d.proxyUrl}/up/bucket/big`, { dispatcher: agent, method: 'PUT', headers: { 'content-length': String(n * chunk.length), 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, body })
        await put.body.dump()
        const ms = performance.now() - t0
        const after = await d.memory()
        await agent.close()
        mem.push(`| ${name} | ${put.statusCode} | ${Math.round(before.rss / 1048576)} | ${Math.round(after.peak / 1048576)} | ${Math.round((after.peak - before.rss) / 1048576)} | ${Math.round((n / ms) * 1000)} |`)
      } finally {
        await d.stop()
      }
    }
  } finally {
    up.server.close()
    await rm(dir, { recursive: true, force: true })
  }
  console.log(`\nRoute to a local upstream, ${CONCURRENCY} concurrent GETs for ${DURATION} ms`)
  console.log('| credential | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|')
  for (const r of rows) console.log(r)
  console.log('\n200 MiB streamed PUT through the daemon')
  console.log('| credential | status | RSS before (MiB) | peak RSS (MiB) | growth (MiB) | MiB/s |\n|---|---|---|---|---|---|')
  for (const m of mem) console.log(m)
}

await signing()
await throughDaemon()
