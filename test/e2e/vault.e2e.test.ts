import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { request } from 'undici'
import type { Daemon } from '../../src/daemon.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { providerE2e, testBinNoCanary, testNoCanaryInLogs, testSharedProviderScenarios, type ProviderCanaries, type ProviderScenarioHooks } from '../helpers/provider-e2e.ts'
import { startUpstream } from '../helpers/upstream.ts'
import { startVaultServer, type VaultServer } from '../servers/vault-server.ts'

// axios (under node-vault) honours proxy variables.
process.env.NO_PROXY = '127.0.0.1,localhost'

const canaries: ProviderCanaries = { first: 'canary-e2e-vault-token-one-3f9a', second: 'canary-e2e-vault-token-two-8c1d', key: 'canary-e2e-vault-apikey-5b7e' }
const SECRET_ID = 'canary-e2e-secret-id-2a4c6e'
const ROLE_ID = 'latchkey-e2e-role'

let vault: VaultServer

const e2e = providerE2e(
  'v',
  canaries,
  async (dir) => {
    const ca = await createTestCa()
    await writeFile(path.join(dir, 'vault-ca.pem'), ca.caPem)
    await writeFile(path.join(dir, 'secret-id'), SECRET_ID)
    vault = await startVaultServer({ tls: await ca.issue(['localhost', '127.0.0.1']), approle: { roleId: ROLE_ID, secretId: SECRET_ID } })
    vault.setSecret('secret/app', { token: canaries.first })
    vault.setSecret('secret/flaky', { key: canaries.key })
    return {
      provider: { type: 'vault', address: vault.url, caFile: 'vault-ca.pem', auth: { method: 'approle', roleId: ROLE_ID, secretIdFile: path.join(dir, 'secret-id') } },
      app: { ref: 'secret/data/app', field: 'token' },
      flaky: { ref: 'secret/data/flaky', field: 'key' },
      fetchAttempts: 2,
    }
  },
  async () => {
    await vault?.close()
  },
)

const reads = (p: string) => vault.log.filter((l) => l.path === `/v1/${p}`).length

test('the daemon logs in with AppRole over TLS and injects the Vault secret', async () => {
  const r = await e2e.get('up', '/api/runs')
  assert.equal(r.status, 200, r.body)
  assert.equal(e2e.up.received.at(-1)?.headers.authorization, `Bearer ${canaries.first}`)
  assert.equal(vault.requestCount('/v1/auth/approle/login'), 1)
})

const hooks: ProviderScenarioHooks = {
  canaries,
  appCalls: () => reads('secret/data/app'),
  flakyCalls: () => reads('secret/data/flaky'),
  rotate: (second) => vault.rotate('secret/app', { token: second }),
  failFlaky: () => vault.failNext(1_000, 503, '/v1/secret/data/flaky'),
  recover: () => vault.recover(),
  throttleApp: () => vault.throttleNext(1, '/v1/secret/data/app'),
  failureTest: 'a failing Vault (503 sealed) is survived within maxStale, then fails closed, then recovers',
  throttleTest: 'a rate-limited Vault (429) is retried by the daemon and counted in metrics',
}

testSharedProviderScenarios(e2e, hooks)

const vaultSecrets = () => [SECRET_ID, vault.rootToken, ...vault.log.map((l) => l.token).filter((t): t is string => typeof t === 'string')]

testBinNoCanary(e2e, 'the real bin at trace level prints no canary, Vault token or secret_id on stdout or stderr through injection, a rotation bust and a Vault failure', hooks, {
  more: vaultSecrets,
})

testNoCanaryInLogs(e2e, 'no canary, Vault token or secret_id appears in any log line', canaries, {
  more: vaultSecrets,
  logged: { text: '"provider":"v"', why: 'provider events were logged' },
})

test('Kubernetes auth on a non-default mount: the daemon logs in with the pod token, injects, and logs in again after its Vault token is revoked', async () => {
  const JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDpwaXBlbGluZSJ9.canary-e2e-k8s-jwt-sig-61d0'
  const TOKEN = 'canary-e2e-vault-k8s-token-0c3b'
  const logs = captureLogs()
  const dir = await mkdtemp(path.join(tmpdir(), 'latchkey-vault-k8s-'))
  const ca = await createTestCa()
  const k8s = await startVaultServer({ tls: await ca.issue(['127.0.0.1']), kubernetes: { role: 'pipeline', jwt: JWT, mount: 'k8s-pods' } })
  const up = await startUpstream()
  up.handle((req, res) => {
    res.writeHead(req.headers.authorization === `Bearer ${TOKEN}` ? 200 : 401)
    res.end()
  })
  let daemon: Daemon | undefined
  try {
    k8s.setSecret('secret/app', { token: TOKEN })
    await writeFile(path.join(dir, 'vault-ca.pem'), ca.caPem)
    await writeFile(path.join(dir, 'sa-token'), JWT)
    daemon = await startTestDaemon({
      baseDir: dir,
      logStream: logs.stream,
      config: {
        cache: { ttl: '1h', fetchAttempts: 2, fetchTimeout: '2s' },
        providers: { v: { type: 'vault', address: k8s.url, caFile: './vault-ca.pem', auth: { method: 'kubernetes', role: 'pipeline', jwtFile: './sa-token', mount: 'k8s-pods' } } },
        credentials: { app: { provider: 'v', ref: 'secret/data/app', field: 'token', hosts: [`127.0.0.1:${up.port}`], inject: { type: 'bearer' }, insecure: true } },
        routes: { up: { upstream: `http://127.0.0.1:${up.port}` } },
      },
    })
    const get = async (p: string) => (await request(`${daemon!.proxyUrl}/up${p}`)).statusCode
    assert.equal(await get('/k8s'), 200)
    assert.equal(up.received.at(-1)?.headers.authorization, `Bearer ${TOKEN}`)
    assert.equal(k8s.requestCount('/v1/auth/k8s-pods/login'), 1)
    const issued = k8s.lastIssuedToken
    k8s.revokeToken(issued)
    daemon.cache.clear()
    assert.equal(await get('/k8s-after-revoke'), 200)
    assert.equal(k8s.requestCount('/v1/auth/k8s-pods/login'), 2, 'an invalid token leads to a new login')
    const tokens = k8s.log.map((l) => l.token).filter((t): t is string => typeof t === 'string')
    assertNoCanary(logs.lines(), [JWT, TOKEN, k8s.rootToken, ...tokens])
    assert.ok(logs.records().length > 0, 'every captured line is a JSON object')
  } finally {
    await daemon?.close()
    await Promise.all([k8s.close(), up.close()])
    await rm(dir, { recursive: true, force: true })
  }
})
