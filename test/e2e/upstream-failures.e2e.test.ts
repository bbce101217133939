import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { startDaemon, type Daemon } from '../../src/daemon.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { startVaultServer, type VaultServer } from '../servers/vault-server.ts'

const CANARY = 'upstream-failure-canary-83ac'
const VAULT_CANARY = 'vault-slow-canary-19fe'
let dir: string
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
  vault = await startVaultServer()
  vault.setSecret('secret/app', { token: VAULT_CANARY })
  const probe = net.createServer()
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r))
  refusedPort = (probe.address() as net.AddressInfo).port
  await new Promise((r) => probe.close(r))
  const cred = (port: number) => ({ provider: 'dev', ref: 'TOKEN', hosts: [`localhost:${port}`], inject: { type: 'bearer' } })
  daemon = await startDaemon({
    baseDir: dir,
    env: { TOKEN: CANARY, NO_PROXY: '*' },
    logStream: logs.stream,
    processMetrics: false,
    waitReady: true,
    config: {
      listen: '127.0.0.1:0',
      admin: { listen: '127.0.0.1:0' },
      log: { level: 'trace' },
      upstream: { caFile: 'ca.pem', requestTimeout: '400ms', connectTimeout: '1s' },
      cache: { fetchTimeout: '5s', fetchAttempts: 1 },
      providers: { dev: { type: 'env' }, vault: { type: 'vault', address: vault.url, auth: { method: 'token', token: vault.rootToken } } },
      credentials: {
        untrusted: cred(untrusted.port),
        wrongname: cred(wrongName.port),
        slow: cred(slow.port),
        refused: cred(refusedPort),
        vaulted: { provider: 'vault', ref: 'secret/data/app', field: 'token', hosts: ['vaulted.test'], inject: { type: 'bearer' }, prefetch: false },
      },
      routes: {
        untrusted: { upstream: `https://localhost:${untrusted.port}` },
        wrongname: { upstream: `https://localhost:${wrongName.port}` },
        slow: { upstream: `https://localhost:${slow.port}` },
        refused: { upstream: `https://localhost:${refusedPort}` },
        vaulted: { upstream: 'https://vaulted.test' },
      },
    },
  })
})

after(async () => {
  await daemon?.close()
  await Promise.all([untrusted?.close(), wrongName?.close(), slow?.close(), vault?.close()])
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

test('no log line or error body of these failures contains a canary', async () => {
  const bodies = await Promise.all(['untrusted', 'wrongname', 'refused'].map(async (r) => (await call(r)).body))
  assertNoCanary([...logs.lines(), ...bodies], [CANARY, VAULT_CANARY])
})
