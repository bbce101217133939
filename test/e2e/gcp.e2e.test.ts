import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { startDaemon, type Daemon } from '../../src/daemon.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import * as grpc from '@grpc/grpc-js'
import { startGcpServer, type GcpServer } from '../servers/gcp-server.ts'

// google-auth-library's HTTP client honours proxy variables; the STS endpoint is on loopback.
for (const k of ['GOOGLE_APPLICATION_CREDENTIALS', 'GOOGLE_CLOUD_PROJECT', 'GCLOUD_PROJECT']) delete process.env[k]
process.env.NO_PROXY = '127.0.0.1,localhost'

const CANARY_1 = 'canary-e2e-gcp-token-one-0b4d'
const CANARY_2 = 'canary-e2e-gcp-token-two-e95c'
const CANARY_KEY = 'canary-e2e-gcp-apikey-62fa'

let sm: GcpServer
let up: Upstream
let daemon: Daemon
const logs = captureLogs()
let current = CANARY_1

before(async () => {
  const ca = await createTestCa()
  const dir = mkdtempSync(path.join(tmpdir(), 'lk-gcp-e2e-'))
  writeFileSync(path.join(dir, 'sm-ca.pem'), ca.caPem)
  sm = await startGcpServer({ tls: await ca.issue(['127.0.0.1']) })
  // Workload Identity Federation credentials: google-auth-library exchanges the subject token at the local STS endpoint.
  writeFileSync(path.join(dir, 'subject-token'), sm.subjectToken)
  writeFileSync(path.join(dir, 'credentials.json'), sm.externalAccountJson(path.join(dir, 'subject-token')))
  sm.setSecret('api-token', CANARY_1)
  sm.setSecret('flaky-key', CANARY_KEY)
  up = await startUpstream()
  up.handle((req, res) => {
    const ok = req.headers.host?.startsWith('localhost') ? req.headers['x-api-key'] === CANARY_KEY : req.headers.authorization === `Bearer ${current}`
    res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' })
    res.end(ok ? '{"ok":true}' : '{"error":"unauthorized"}')
  })
  daemon = await startDaemon({
    baseDir: dir,
    env: { GOOGLE_CLOUD_PROJECT: sm.projectId },
    logStream: logs.stream,
    processMetrics: false,
    waitReady: true,
    config: {
      listen: '127.0.0.1:0',
      admin: { listen: '127.0.0.1:0' },
      log: { level: 'trace' },
      cache: { ttl: '1h', maxStale: '1500ms', bustCooldown: '50ms', fetchTimeout: '2s', fetchAttempts: 3 },
      providers: { sm: { type: 'gcp', apiEndpoint: '127.0.0.1', port: sm.port, credentialsFile: './credentials.json', caFile: './sm-ca.pem' } },
      credentials: {
        app: { provider: 'sm', ref: 'api-token', hosts: [`127.0.0.1:${up.port}`], inject: { type: 'bearer' }, insecure: true },
        flaky: { provider: 'sm', ref: `projects/${sm.projectId}/secrets/flaky-key`, hosts: [`localhost:${up.port}`], inject: { type: 'header', header: 'X-Api-Key' }, insecure: true, ttl: '300ms' },
      },
      routes: {
        up: { upstream: `http://127.0.0.1:${up.port}` },
        flaky: { upstream: `http://localhost:${up.port}` },
      },
    },
  })
})

after(async () => {
  await daemon?.close()
  await sm?.close()
  await up?.close()
})

async function get(route: string, p = '/x') {
  const res = await request(`${daemon.proxyUrl}/${route}${p}`)
  return { status: res.statusCode, body: await res.body.text() }
}

test('the daemon reads a Secret Manager secret over gRPC (CRC verified) and injects it', async () => {
  assert.deepEqual(daemon.notReady(), [])
  const r = await get('up', '/api')
  assert.equal(r.status, 200, r.body)
  assert.equal(up.received.at(-1)?.headers.authorization, `Bearer ${CANARY_1}`)
  assert.ok(sm.requestCount('token') >= 1, 'the token came from the STS exchange')
})

test('many requests cost one provider call', async () => {
  const before = sm.reads('api-token')
  assert.equal(before, 1, 'prefetched once')
  const results = await Promise.all(Array.from({ length: 25 }, (_, i) => get('up', `/item/${i}`)))
  assert.ok(results.every((r) => r.status === 200))
  assert.equal(sm.reads('api-token'), before)
})

test('after a rotation the upstream 401 costs exactly one extra provider call and the request succeeds', async () => {
  const before = sm.reads('api-token')
  sm.rotate('api-token', CANARY_2)
  current = CANARY_2
  const r = await get('up', '/after-rotation')
  assert.equal(r.status, 200, r.body)
  assert.equal(sm.reads('api-token') - before, 1)
  assert.deepEqual(
    up.received.slice(-2).map((x) => x.headers.authorization),
    [`Bearer ${CANARY_1}`, `Bearer ${CANARY_2}`],
  )
  assert.equal((await get('up', '/again')).status, 200)
  assert.equal(sm.reads('api-token') - before, 1)
})

test('a failing Secret Manager (UNAVAILABLE) is survived within maxStale, then fails closed, then recovers', async () => {
  assert.equal((await get('flaky')).status, 200)
  sm.failNext(1_000, grpc.status.UNAVAILABLE, undefined, 'flaky-key')
  await sleep(400) // past the 300 ms TTL
  const stale = await get('flaky', '/stale')
  assert.equal(stale.status, 200, 'served the stale value')
  assert.equal(up.received.at(-1)?.headers['x-api-key'], CANARY_KEY)
  await sleep(1_700) // past maxStale
  const failed = await get('flaky', '/too-stale')
  assert.equal(failed.status, 503, failed.body)
  assert.match(failed.body, /secret_unavailable/)
  sm.failNext(0, grpc.status.UNAVAILABLE)
  const back = await get('flaky', '/recovered')
  assert.equal(back.status, 200, back.body)
})

test('RESOURCE_EXHAUSTED is retried by the daemon with backoff and counted in metrics', async () => {
  sm.throttleNext(1, 'api-token')
  daemon.cache.clear()
  const before = sm.reads('api-token')
  const r = await get('up', '/after-throttle')
  assert.equal(r.status, 200, r.body)
  assert.equal(sm.reads('api-token') - before, 2, 'one throttled call, one retry')
  const metrics = await (await request(`${daemon.adminUrl}/metrics`)).body.text()
  assert.match(metrics, /latchkey_provider_throttled_total\{provider="sm"\} 1/)
})

test('a corrupted payload (wrong CRC-32C) is never injected: the request fails closed and the check is logged', async () => {
  sm.corruptCrcNext(10)
  daemon.cache.clear()
  const before = up.received.length
  const r = await get('up', '/corrupted')
  assert.equal(r.status, 503, r.body)
  assert.equal(up.received.length, before, 'nothing reached the upstream')
  assert.ok(logs.lines().some((l) => l.includes('CRC32C_MISMATCH')), 'the provider code is logged')
  sm.corruptCrcNext(0)
})

test('a disabled latest version is logged as access_denied (FAILED_PRECONDITION) and the request fails closed', async () => {
  sm.setState('api-token', 'DISABLED')
  daemon.cache.clear()
  const r = await get('up', '/disabled')
  assert.equal(r.status, 503, r.body)
  assert.ok(logs.lines().some((l) => l.includes('FAILED_PRECONDITION disabled')), 'the provider code is logged')
})

test('no canary appears in any log line (trace level)', () => {
  const lines = logs.lines()
  assert.ok(lines.length > 20, 'trace logging captured lines')
  logs.records()
  assertNoCanary(lines, [CANARY_1, CANARY_2, CANARY_KEY])
})
