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
import { startAzureServer, type AzureServer } from '../servers/azure-server.ts'

// The Azure identity SDK reads the managed-identity endpoint from the process environment
// (not from the daemon's env record): point it at the local token endpoint.
for (const k of Object.keys(process.env)) if (k.startsWith('AZURE_') || k.startsWith('IDENTITY_') || k.startsWith('MSI_')) delete process.env[k]
process.env.NO_PROXY = '127.0.0.1,localhost'

const CANARY_1 = 'canary-e2e-azure-token-one-5c8e'
const CANARY_2 = 'canary-e2e-azure-token-two-a13f'
const CANARY_KEY = 'canary-e2e-azure-apikey-77d0'

let kv: AzureServer
let up: Upstream
let daemon: Daemon
const logs = captureLogs()
let current = CANARY_1

before(async () => {
  const ca = await createTestCa()
  const dir = mkdtempSync(path.join(tmpdir(), 'lk-azure-e2e-'))
  writeFileSync(path.join(dir, 'vault-ca.pem'), ca.caPem)
  kv = await startAzureServer({ tls: await ca.issue(['127.0.0.1']) })
  process.env.IDENTITY_ENDPOINT = kv.identityEndpoint
  process.env.IDENTITY_HEADER = kv.identityHeader
  kv.setSecret('api-token', CANARY_1)
  kv.setSecret('flaky-key', CANARY_KEY)
  up = await startUpstream()
  up.handle((req, res) => {
    const ok = req.headers.host?.startsWith('localhost') ? req.headers['x-api-key'] === CANARY_KEY : req.headers.authorization === `Bearer ${current}`
    res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' })
    res.end(ok ? '{"ok":true}' : '{"error":"unauthorized"}')
  })
  daemon = await startDaemon({
    baseDir: dir,
    env: {},
    logStream: logs.stream,
    processMetrics: false,
    waitReady: true,
    config: {
      listen: '127.0.0.1:0',
      admin: { listen: '127.0.0.1:0' },
      log: { level: 'trace' },
      cache: { ttl: '1h', maxStale: '1500ms', bustCooldown: '50ms', fetchTimeout: '2s', fetchAttempts: 3 },
      providers: { kv: { type: 'azure', vaultUrl: kv.vaultUrl, caFile: './vault-ca.pem', disableChallengeResourceVerification: true } },
      credentials: {
        app: { provider: 'kv', ref: 'api-token', hosts: [`127.0.0.1:${up.port}`], inject: { type: 'bearer' }, insecure: true },
        flaky: { provider: 'kv', ref: 'Flaky-Key', hosts: [`localhost:${up.port}`], inject: { type: 'header', header: 'X-Api-Key' }, insecure: true, ttl: '300ms' },
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
  await kv?.close()
  await up?.close()
})

async function get(route: string, p = '/x') {
  const res = await request(`${daemon.proxyUrl}/${route}${p}`)
  return { status: res.statusCode, body: await res.body.text() }
}

test('the daemon reads a Key Vault secret through challenge auth and managed identity and injects it', async () => {
  assert.deepEqual(daemon.notReady(), [])
  const r = await get('up', '/api')
  assert.equal(r.status, 200, r.body)
  assert.equal(up.received.at(-1)?.headers.authorization, `Bearer ${CANARY_1}`)
  assert.ok(kv.requestCount('challenge') >= 1 && kv.requestCount('token') >= 1)
})

test('many requests cost one provider call', async () => {
  const before = kv.reads('api-token')
  assert.equal(before, 1, 'prefetched once')
  const results = await Promise.all(Array.from({ length: 25 }, (_, i) => get('up', `/item/${i}`)))
  assert.ok(results.every((r) => r.status === 200))
  assert.equal(kv.reads('api-token'), before)
})

test('after a rotation the upstream 401 costs exactly one extra provider call and the request succeeds', async () => {
  const before = kv.reads('api-token')
  kv.rotate('api-token', CANARY_2)
  current = CANARY_2
  const r = await get('up', '/after-rotation')
  assert.equal(r.status, 200, r.body)
  assert.equal(kv.reads('api-token') - before, 1)
  assert.deepEqual(
    up.received.slice(-2).map((x) => x.headers.authorization),
    [`Bearer ${CANARY_1}`, `Bearer ${CANARY_2}`],
  )
  assert.equal((await get('up', '/again')).status, 200)
  assert.equal(kv.reads('api-token') - before, 1)
})

test('a failing Key Vault (503) is survived within maxStale, then fails closed, then recovers', async () => {
  assert.equal((await get('flaky')).status, 200)
  kv.failNext(1_000, 503, 'flaky-key')
  await sleep(400) // past the 300 ms TTL
  const stale = await get('flaky', '/stale')
  assert.equal(stale.status, 200, 'served the stale value')
  assert.equal(up.received.at(-1)?.headers['x-api-key'], CANARY_KEY)
  await sleep(1_700) // past maxStale
  const failed = await get('flaky', '/too-stale')
  assert.equal(failed.status, 503, failed.body)
  assert.match(failed.body, /secret_unavailable/)
  kv.failNext(0, 503)
  const back = await get('flaky', '/recovered')
  assert.equal(back.status, 200, back.body)
})

test('a 429 without Retry-After is retried by the daemon with backoff and counted in metrics', async () => {
  kv.throttleNext(1, 'api-token')
  daemon.cache.clear()
  const before = kv.reads('api-token')
  const r = await get('up', '/after-throttle')
  assert.equal(r.status, 200, r.body)
  assert.equal(kv.reads('api-token') - before, 2, 'one throttled call, one retry')
  const metrics = await (await request(`${daemon.adminUrl}/metrics`)).body.text()
  assert.match(metrics, /latchkey_provider_throttled_total\{provider="kv"\} 1/)
})

test('a disabled secret is logged as access_denied with Key Vault\'s code, and the request fails closed', async () => {
  kv.disable('api-token')
  daemon.cache.clear()
  const r = await get('up', '/disabled')
  assert.equal(r.status, 503, r.body)
  assert.ok(logs.lines().some((l) => l.includes('SecretDisabled')), 'the provider code is logged')
})

test('no canary appears in any log line (trace level)', () => {
  const lines = logs.lines()
  assert.ok(lines.length > 20, 'trace logging captured lines')
  logs.records()
  assertNoCanary(lines, [CANARY_1, CANARY_2, CANARY_KEY])
})
