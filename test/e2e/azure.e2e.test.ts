import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { test } from 'node:test'
import { providerE2e, testBinNoCanary, testNoCanaryInLogs, testSharedProviderScenarios, type ProviderCanaries, type ProviderScenarioHooks } from '../helpers/provider-e2e.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startAzureServer, type AzureServer } from '../servers/azure-server.ts'

// The Azure identity SDK reads the managed-identity endpoint from the process environment
// (not from the daemon's env record): point it at the local token endpoint.
for (const k of Object.keys(process.env)) if (k.startsWith('AZURE_') || k.startsWith('IDENTITY_') || k.startsWith('MSI_')) delete process.env[k]
process.env.NO_PROXY = '127.0.0.1,localhost'

const canaries: ProviderCanaries = { first: 'canary-e2e-azure-token-one-5c8e', second: 'canary-e2e-azure-token-two-a13f', key: 'canary-e2e-azure-apikey-77d0' }

let kv: AzureServer

const e2e = providerE2e(
  'kv',
  canaries,
  async (dir) => {
    const ca = await createTestCa()
    await writeFile(path.join(dir, 'vault-ca.pem'), ca.caPem)
    kv = await startAzureServer({ tls: await ca.issue(['127.0.0.1']) })
    process.env.IDENTITY_ENDPOINT = kv.identityEndpoint
    process.env.IDENTITY_HEADER = kv.identityHeader
    kv.setSecret('api-token', canaries.first)
    kv.setSecret('flaky-key', canaries.key)
    return {
      provider: { type: 'azure', vaultUrl: kv.vaultUrl, caFile: './vault-ca.pem', disableChallengeResourceVerification: true },
      app: { ref: 'api-token' },
      flaky: { ref: 'Flaky-Key' },
      fetchAttempts: 3,
    }
  },
  async () => {
    await kv?.close()
  },
)

test('the daemon reads a Key Vault secret through challenge auth and managed identity and injects it', async () => {
  assert.deepEqual(e2e.daemon.notReady(), [])
  const r = await e2e.get('up', '/api')
  assert.equal(r.status, 200, r.body)
  assert.equal(e2e.up.received.at(-1)?.headers.authorization, `Bearer ${canaries.first}`)
  assert.ok(kv.requestCount('challenge') >= 1 && kv.requestCount('token') >= 1)
})

const hooks: ProviderScenarioHooks = {
  canaries,
  appCalls: () => kv.reads('api-token'),
  flakyCalls: () => kv.reads('flaky-key'),
  rotate: (second) => kv.rotate('api-token', second),
  failFlaky: () => kv.failNext(1_000, 503, 'flaky-key'),
  recover: () => kv.failNext(0, 503),
  throttleApp: () => kv.throttleNext(1, 'api-token'),
  throttledCallCounted: true,
  failureTest: 'a failing Key Vault (503) is survived within maxStale, then fails closed, then recovers',
  throttleTest: 'a 429 without Retry-After is retried by the daemon with backoff and counted in metrics',
}

testSharedProviderScenarios(e2e, hooks)

testBinNoCanary(e2e, 'the real bin at trace level prints no canary or identity header on stdout or stderr through injection, a rotation bust and a Key Vault failure', hooks, {
  processEnv: () => ({ IDENTITY_ENDPOINT: kv.identityEndpoint, IDENTITY_HEADER: kv.identityHeader }),
  more: () => [kv.identityHeader],
})

test('a disabled secret is logged as access_denied with Key Vault\'s code, and the request fails closed', async () => {
  kv.disable('api-token')
  e2e.daemon.cache.clear()
  const r = await e2e.get('up', '/disabled')
  assert.equal(r.status, 503, r.body)
  assert.ok(e2e.logs.lines().some((l) => l.includes('SecretDisabled')), 'the provider code is logged')
})

testNoCanaryInLogs(e2e, 'no canary appears in any log line (trace level)', canaries)
