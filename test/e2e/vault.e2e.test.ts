import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { startDaemon, type Daemon } from '../../src/daemon.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { startVaultServer, type VaultServer } from '../servers/vault-server.ts'

// axios (under node-vault) honours proxy variables.
process.env.NO_PROXY = '127.0.0.1,localhost'

const CANARY_1 = 'canary-e2e-vault-token-one-3f9a'
const CANARY_2 = 'canary-e2e-vault-token-two-8c1d'
const CANARY_KEY = 'canary-e2e-vault-apikey-5b7e'
const SECRET_ID = 'canary-e2e-secret-id-2a4c6e'
const ROLE_ID = 'latchkey-e2e-role'

let dir: string
let vault: VaultServer
let up: Upstream
let daemon: Daemon
const lines: string[] = []
const logStream = new Writable({
  write(chunk: Buffer, _enc, cb) {
    lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''))
    cb()
  },
})
let current = CANARY_1

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-vault-e2e-'))
  const ca = await createTestCa()
  await writeFile(path.join(dir, 'vault-ca.pem'), ca.caPem)
  await writeFile(path.join(dir, 'secret-id'), SECRET_ID)
  vault = await startVaultServer({ tls: await ca.issue(['localhost', '127.0.0.1']), approle: { roleId: ROLE_ID, secretId: SECRET_ID } })
  vault.setSecret('secret/app', { token: CANARY_1 })
  vault.setSecret('secret/flaky', { key: CANARY_KEY })
  up = await startUpstream()
  // The upstream accepts only the current token (as a real API does after a rotation).
  up.handle((req, res) => {
    const auth = req.headers.authorization
    const key = req.headers['x-api-key']
    const ok = req.headers.host?.startsWith('localhost') ? key === CANARY_KEY : auth === `Bearer ${current}`
    res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' })
    res.end(ok ? '{"ok":true}' : '{"error":"unauthorized"}')
  })
  daemon = await startDaemon({
    baseDir: dir,
    env: {},
    logStream,
    processMetrics: false,
    waitReady: true,
    config: {
      listen: '127.0.0.1:0',
      admin: { listen: '127.0.0.1:0' },
      log: { level: 'trace' },
      cache: { ttl: '1h', maxStale: '1500ms', bustCooldown: '50ms', fetchTimeout: '2s', fetchAttempts: 2 },
      providers: {
        v: { type: 'vault', address: vault.url, caFile: 'vault-ca.pem', auth: { method: 'approle', roleId: ROLE_ID, secretIdFile: path.join(dir, 'secret-id') } },
      },
      credentials: {
        app: { provider: 'v', ref: 'secret/data/app', field: 'token', hosts: [`127.0.0.1:${up.port}`], inject: { type: 'bearer' }, insecure: true },
        flaky: { provider: 'v', ref: 'secret/data/flaky', field: 'key', hosts: [`localhost:${up.port}`], inject: { type: 'header', header: 'X-Api-Key' }, insecure: true, ttl: '300ms' },
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
  await vault?.close()
  await up?.close()
  await rm(dir, { recursive: true, force: true })
})

async function get(route: string, p = '/x') {
  const res = await request(`${daemon.proxyUrl}/${route}${p}`)
  const body = await res.body.text()
  return { status: res.statusCode, body }
}

const reads = (p: string) => vault.log.filter((l) => l.path === `/v1/${p}`).length

test('the daemon logs in with AppRole over TLS and injects the Vault secret', async () => {
  const r = await get('up', '/api/runs')
  assert.equal(r.status, 200, r.body)
  assert.equal(up.received.at(-1)?.headers.authorization, `Bearer ${CANARY_1}`)
  assert.equal(vault.requestCount('/v1/auth/approle/login'), 1)
})

test('many requests cost one provider call', async () => {
  const before = reads('secret/data/app')
  assert.equal(before, 1, 'prefetched once')
  const results = await Promise.all(Array.from({ length: 25 }, (_, i) => get('up', `/item/${i}`)))
  assert.ok(results.every((r) => r.status === 200))
  assert.equal(reads('secret/data/app'), before)
})

test('after a rotation the upstream 401 costs exactly one extra provider call and the request succeeds', async () => {
  const before = reads('secret/data/app')
  vault.rotate('secret/app', { token: CANARY_2 })
  current = CANARY_2
  const r = await get('up', '/after-rotation')
  assert.equal(r.status, 200, r.body)
  assert.equal(reads('secret/data/app') - before, 1)
  const last2 = up.received.slice(-2).map((x) => x.headers.authorization)
  assert.deepEqual(last2, [`Bearer ${CANARY_1}`, `Bearer ${CANARY_2}`])
  // And the new value is cached.
  assert.equal((await get('up', '/again')).status, 200)
  assert.equal(reads('secret/data/app') - before, 1)
})

test('a failing Vault (503 sealed) is survived within maxStale, then fails closed, then recovers', async () => {
  assert.equal((await get('flaky')).status, 200)
  vault.failNext(1_000, 503, '/v1/secret/data/flaky')
  await sleep(400) // past the 300 ms TTL: the entry is stale
  const stale = await get('flaky', '/stale')
  assert.equal(stale.status, 200, 'served the stale value while Vault fails')
  assert.equal(up.received.at(-1)?.headers['x-api-key'], CANARY_KEY)
  assert.ok(reads('secret/data/flaky') >= 2, 'Vault was asked again')
  await sleep(1_700) // past maxStale
  const failed = await get('flaky', '/too-stale')
  assert.equal(failed.status, 503, failed.body)
  assert.match(failed.body, /secret_unavailable/)
  vault.recover()
  const back = await get('flaky', '/recovered')
  assert.equal(back.status, 200, back.body)
})

test('a rate-limited Vault (429) is retried by the daemon and counted in metrics', async () => {
  vault.throttleNext(1, '/v1/secret/data/app')
  daemon.cache.clear()
  const r = await get('up', '/after-throttle')
  assert.equal(r.status, 200, r.body)
  const metrics = await (await request(`${daemon.adminUrl}/metrics`)).body.text()
  assert.match(metrics, /latchkey_provider_throttled_total\{provider="v"\} 1/)
})

test('no canary, Vault token or secret_id appears in any log line', () => {
  assert.ok(lines.length > 20, 'trace logging captured lines')
  const tokens = vault.log.map((l) => l.token).filter((t): t is string => typeof t === 'string')
  const canaries = [CANARY_1, CANARY_2, CANARY_KEY, SECRET_ID, vault.rootToken, ...tokens]
  const forms = canaries.flatMap((c) => [c, Buffer.from(c).toString('base64'), encodeURIComponent(c)])
  for (const line of lines) for (const f of forms) assert.ok(!line.includes(f), `log line leaks a canary: ${line}`)
  assert.ok(lines.some((l) => l.includes('"provider":"v"')), 'provider events were logged')
})
