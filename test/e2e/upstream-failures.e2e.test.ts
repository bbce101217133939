import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import type { Daemon } from '../../src/daemon.ts'
import { createLatchkeyInterceptor } from '../../src/shim/interceptor.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { startVaultServer, type VaultServer } from '../servers/vault-server.ts'

const CANARY = 'upstream-failure-canary-83ac'
const VAULT_CANARY = 'vault-slow-canary-19fe'
const STALE_CANARY = 'vault-stale-canary-4c2a'
const GONE_CANARY = 'vault-gone-canary-8e31'
const ROT = ['vault-rotating-canary-one-a1', 'vault-rotating-canary-two-b2', 'vault-rotating-canary-three-c3']
const REFUSED_BODY = '{"error":"token refused by the upstream"}'
let dir: string
let checking: Upstream
let staleUp: Upstream
let goneUp: Upstream
let accepted = ROT[0]
let untrusted: Upstream
let wrongName: Upstream
let slow: Upstream
let vault: VaultServer
let refusedPort: number
let daemon: Daemon
const logs = captureLogs()

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-fail-'))
  const trusted = await createTestCa()
  const stranger = await createTestCa()
  await writeFile(path.join(dir, 'ca.pem'), trusted.caPem)
  untrusted = await startUpstream(await stranger.issue(['localhost']))
  wrongName = await startUpstream(await trusted.issue(['other.test']))
  slow = await startUpstream(await trusted.issue(['localhost']))
  slow.handle(() => undefined) // never answers
  checking = await startUpstream(await trusted.issue(['localhost']))
  checking.handle((req, res) => {
    if (req.headers.authorization === `Bearer ${accepted}`) {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end(`ok ${req.url}`)
      return
    }
    res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' })
    res.end(REFUSED_BODY)
  })
  // Default handler (200 echo): these only show which value was injected.
  staleUp = await startUpstream(await trusted.issue(['localhost']))
  goneUp = await startUpstream(await trusted.issue(['localhost']))
  vault = await startVaultServer()
  vault.setSecret('secret/app', { token: VAULT_CANARY })
  vault.setSecret('secret/stale', { token: STALE_CANARY })
  vault.setSecret('secret/gone', { token: GONE_CANARY })
  vault.setSecret('secret/rotating', { token: ROT[0] })
  const probe = net.createServer()
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r))
  refusedPort = (probe.address() as net.AddressInfo).port
  await new Promise((r) => probe.close(r))
  const cred = (port: number) => ({ provider: 'dev', ref: 'TOKEN', hosts: [`localhost:${port}`], inject: { type: 'bearer' } })
  daemon = await startTestDaemon({
    baseDir: dir,
    env: { TOKEN: CANARY, NO_PROXY: '*' },
    logStream: logs.stream,
    config: {
      upstream: { caFile: 'ca.pem', requestTimeout: '400ms', connectTimeout: '1s' },
      cache: { fetchTimeout: '5s', fetchAttempts: 1, maxStale: '1s', bustCooldown: '10s' },
      providers: { dev: { type: 'env' }, vault: { type: 'vault', address: vault.url, auth: { method: 'token', token: vault.rootToken } } },
      credentials: {
        untrusted: cred(untrusted.port),
        wrongname: cred(wrongName.port),
        slow: cred(slow.port),
        refused: cred(refusedPort),
        vaulted: { provider: 'vault', ref: 'secret/data/app', field: 'token', hosts: ['vaulted.test'], inject: { type: 'bearer' }, prefetch: false },
        // Short-lived entries for the stale cases; each its own secret so their refreshes do not
        // meet. Not prefetched: a prefetched credential is kept fresh in the background, and
        // these must expire while unused.
        stale: { provider: 'vault', ref: 'secret/data/stale', field: 'token', hosts: [`localhost:${staleUp.port}`], inject: { type: 'bearer' }, ttl: '300ms', prefetch: false },
        gone: { provider: 'vault', ref: 'secret/data/gone', field: 'token', hosts: [`localhost:${goneUp.port}`], inject: { type: 'bearer' }, ttl: '300ms', prefetch: false },
        checking: { provider: 'vault', ref: 'secret/data/rotating', field: 'token', hosts: [`localhost:${checking.port}`], inject: { type: 'bearer' } },
      },
      routes: {
        untrusted: { upstream: `https://localhost:${untrusted.port}` },
        wrongname: { upstream: `https://localhost:${wrongName.port}` },
        slow: { upstream: `https://localhost:${slow.port}` },
        refused: { upstream: `https://localhost:${refusedPort}` },
        vaulted: { upstream: 'https://vaulted.test' },
        stale: { upstream: `https://localhost:${staleUp.port}` },
        gone: { upstream: `https://localhost:${goneUp.port}` },
        checking: { upstream: `https://localhost:${checking.port}` },
      },
    },
  })
})

after(async () => {
  await daemon?.close()
  await Promise.all([untrusted?.close(), wrongName?.close(), slow?.close(), checking?.close(), staleUp?.close(), goneUp?.close(), vault?.close()])
  await rm(dir, { recursive: true, force: true })
})

async function call(route: string): Promise<{ status: number; code: string | null; body: string }> {
  const r = await fetch(`${daemon.proxyUrl}/${route}/x`)
  return { status: r.status, code: r.headers.get('x-latchkey-error'), body: await r.text() }
}

test('an upstream whose certificate is not trusted gets no request: 502 upstream_tls_error', async () => {
  const r = await call('untrusted')
  assert.equal(r.status, 502)
  assert.equal(r.code, 'upstream_tls_error')
  assert.equal(untrusted.received.length, 0, 'the credential never reached the untrusted server')
})

test('an upstream whose certificate is for another name gets no request: 502 upstream_tls_error', async () => {
  const r = await call('wrongname')
  assert.equal(r.status, 502)
  assert.equal(r.code, 'upstream_tls_error')
  assert.equal(wrongName.received.length, 0)
})

test('an upstream that does not answer within requestTimeout gives 504 upstream_timeout', async () => {
  const t = performance.now()
  const r = await call('slow')
  assert.equal(r.status, 504)
  assert.equal(r.code, 'upstream_timeout')
  assert.ok(performance.now() - t < 5000)
})

test('an upstream that refuses connections gives 502 upstream_unreachable', async () => {
  const r = await call('refused')
  assert.equal(r.status, 502)
  assert.equal(r.code, 'upstream_unreachable')
})

test('a slow secret manager does not stall a request beyond upstream.requestTimeout', async () => {
  vault.setLatency(3000)
  const t = performance.now()
  const r = await call('vaulted')
  const took = performance.now() - t
  vault.setLatency(0)
  assert.equal(r.status, 503)
  assert.equal(r.code, 'secret_unavailable')
  assert.ok(took < 2000, `answered in ${Math.round(took)} ms`)
})

test('a slow secret manager with an expired value within maxStale: 200 with the old value after the stale grace, counted as stale', async () => {
  assert.equal((await call('stale')).status, 200) // a fresh value, whatever the tests before took
  await sleep(400) // past the ~300 ms TTL (never refreshed ahead: unused since), well within maxStale 1 s
  vault.setLatency(2000)
  try {
    // A 200 is the proof it came in time: past requestTimeout (400 ms) the answer is a 503.
    const r = await call('stale')
    assert.equal(r.status, 200, `got ${r.status} ${r.code}`)
    assert.equal(staleUp.received.at(-1)?.headers.authorization, `Bearer ${STALE_CANARY}`, 'the old value was injected')
    const metrics = await (await fetch(`${daemon.adminUrl}/metrics`)).text()
    assert.match(metrics, /latchkey_cache_stale_served_total\{credential="stale"\} 1\b/)
    assert.ok(logs.records().some((l) => l.event === 'stale_served' && l.credential === 'stale' && l.reason === 'slow'))
  } finally {
    vault.setLatency(0)
  }
})

test('a slow secret manager with a value past maxStale: 503 secret_unavailable within requestTimeout', async () => {
  assert.equal((await call('gone')).status, 200)
  const sent = goneUp.received.length
  await sleep(1500) // past the ~300 ms TTL + maxStale 1 s
  vault.setLatency(3000)
  try {
    const t = performance.now()
    const r = await call('gone')
    const took = performance.now() - t
    assert.equal(r.status, 503)
    assert.equal(r.code, 'secret_unavailable')
    assert.equal(goneUp.received.length, sent, 'nothing was sent upstream')
    assert.ok(took >= 350 && took < 1000, `answered in ${Math.round(took)} ms (requestTimeout 400 ms)`)
  } finally {
    vault.setLatency(0)
  }
})

test("a 401 while the secret manager is slow: the upstream's 401 and body come back unchanged within requestTimeout; the refetch finishes in the background", async () => {
  assert.equal((await call('checking')).status, 200)
  accepted = ROT[1]
  vault.rotate('secret/rotating', { token: ROT[1] })
  vault.setLatency(1500)
  const t = performance.now()
  const r = await fetch(`${daemon.proxyUrl}/checking/x`)
  const body = await r.text()
  const took = performance.now() - t
  vault.setLatency(0)
  assert.equal(r.status, 401)
  assert.equal(body, REFUSED_BODY)
  assert.equal(r.headers.get('www-authenticate'), 'Bearer')
  assert.ok(took < 1000, `answered in ${Math.round(took)} ms (requestTimeout 400 ms, Vault latency 1500 ms)`)
  assert.ok(logs.records().some((l) => l.event === 'bust_timeout' && l.credential === 'checking'))
  let status = 0
  for (let i = 0; i < 40 && status !== 200; i++) {
    await sleep(100)
    status = (await call('checking')).status
  }
  assert.equal(status, 200, 'the background refetch stored the rotated value')
})

test("the in-process shim, too: a 401 while the secret manager is slow returns the upstream's 401 and body within requestTimeout", async () => {
  const shimLogs = captureLogs()
  const latchkey = createLatchkeyInterceptor(
    {
      log: { level: 'info' },
      upstream: { caFile: 'ca.pem', requestTimeout: '400ms' },
      cache: { fetchTimeout: '5s', fetchAttempts: 1 },
      providers: { vault: { type: 'vault', address: vault.url, auth: { method: 'token', token: vault.rootToken } } },
      credentials: { checking: { provider: 'vault', ref: 'secret/data/rotating', field: 'token', hosts: [`localhost:${checking.port}`], inject: { type: 'bearer' } } },
    },
    { baseDir: dir, logStream: shimLogs.stream },
  )
  const base = new Agent()
  try {
    await latchkey.ready
    const client = base.compose(latchkey)
    const url = `https://localhost:${checking.port}/shim`
    assert.equal((await request(url, { dispatcher: client })).statusCode, 200)
    accepted = ROT[2]
    vault.rotate('secret/rotating', { token: ROT[2] })
    vault.setLatency(1500)
    const t = performance.now()
    const r = await request(url, { dispatcher: client })
    const body = await r.body.text()
    const took = performance.now() - t
    vault.setLatency(0)
    assert.equal(r.statusCode, 401)
    assert.equal(body, REFUSED_BODY)
    assert.equal(r.headers['www-authenticate'], 'Bearer')
    assert.ok(took < 1000, `answered in ${Math.round(took)} ms (requestTimeout 400 ms, Vault latency 1500 ms)`)
    assert.ok(shimLogs.records().some((l) => l.event === 'bust_timeout' && l.mode === 'shim'))
    // Until the refetch lands, a request has no value: it fails (secret_unavailable) within requestTimeout.
    let status = 0
    for (let i = 0; i < 40 && status !== 200; i++) {
      await sleep(100)
      try {
        const again = await request(url, { dispatcher: client })
        await again.body.dump()
        status = again.statusCode
      } catch (err) {
        assert.equal((err as { code?: string }).code, 'secret_unavailable')
      }
    }
    assert.equal(status, 200, 'the background refetch stored the rotated value')
    assertNoCanary(shimLogs.lines(), ROT)
  } finally {
    vault.setLatency(0)
    await base.close()
    await latchkey.close()
  }
})

test('no log line or error body of these failures contains a canary', async () => {
  const bodies = await Promise.all(['untrusted', 'wrongname', 'refused'].map(async (r) => (await call(r)).body))
  assertNoCanary([...logs.lines(), ...bodies], [CANARY, VAULT_CANARY, STALE_CANARY, GONE_CANARY, ...ROT])
})
