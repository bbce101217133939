import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { test } from 'node:test'
import * as grpc from '@grpc/grpc-js'
import { providerE2e, testBinNoCanary, testNoCanaryInLogs, testSharedProviderScenarios, type ProviderCanaries, type ProviderScenarioHooks } from '../helpers/provider-e2e.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startGcpServer, type GcpServer } from '../servers/gcp-server.ts'

// google-auth-library's HTTP client honours proxy variables; the STS endpoint is on loopback.
for (const k of ['GOOGLE_APPLICATION_CREDENTIALS', 'GOOGLE_CLOUD_PROJECT', 'GCLOUD_PROJECT']) delete process.env[k]
process.env.NO_PROXY = '127.0.0.1,localhost'

const canaries: ProviderCanaries = { first: 'canary-e2e-gcp-token-one-0b4d', second: 'canary-e2e-gcp-token-two-e95c', key: 'canary-e2e-gcp-apikey-62fa' }

let sm: GcpServer

const e2e = providerE2e(
  'sm',
  canaries,
  async (dir) => {
    const ca = await createTestCa()
    await writeFile(path.join(dir, 'sm-ca.pem'), ca.caPem)
    sm = await startGcpServer({ tls: await ca.issue(['127.0.0.1']) })
    // Workload Identity Federation credentials: google-auth-library exchanges the subject token at the local STS endpoint.
    await writeFile(path.join(dir, 'subject-token'), sm.subjectToken)
    await writeFile(path.join(dir, 'credentials.json'), sm.externalAccountJson(path.join(dir, 'subject-token')))
    sm.setSecret('api-token', canaries.first)
    sm.setSecret('flaky-key', canaries.key)
    return {
      provider: { type: 'gcp', apiEndpoint: '127.0.0.1', port: sm.port, credentialsFile: './credentials.json', caFile: './sm-ca.pem' },
      app: { ref: 'api-token' },
      flaky: { ref: `projects/${sm.projectId}/secrets/flaky-key` },
      fetchAttempts: 3,
      env: { GOOGLE_CLOUD_PROJECT: sm.projectId },
    }
  },
  async () => {
    await sm?.close()
  },
)

test('the daemon reads a Secret Manager secret over gRPC (CRC verified) and injects it', async () => {
  assert.deepEqual(e2e.daemon.notReady(), [])
  const r = await e2e.get('up', '/api')
  assert.equal(r.status, 200, r.body)
  assert.equal(e2e.up.received.at(-1)?.headers.authorization, `Bearer ${canaries.first}`)
  assert.ok(sm.requestCount('token') >= 1, 'the token came from the STS exchange')
})

const hooks: ProviderScenarioHooks = {
  canaries,
  appCalls: () => sm.reads('api-token'),
  flakyCalls: () => sm.reads('flaky-key'),
  rotate: (second) => sm.rotate('api-token', second),
  failFlaky: () => sm.failNext(1_000, grpc.status.UNAVAILABLE, undefined, 'flaky-key'),
  recover: () => sm.failNext(0, grpc.status.UNAVAILABLE),
  throttleApp: () => sm.throttleNext(1, 'api-token'),
  throttledCallCounted: true,
  failureTest: 'a failing Secret Manager (UNAVAILABLE) is survived within maxStale, then fails closed, then recovers',
  throttleTest: 'RESOURCE_EXHAUSTED is retried by the daemon with backoff and counted in metrics',
}

testSharedProviderScenarios(e2e, hooks)

testBinNoCanary(e2e, 'the real bin at trace level prints no canary or subject token on stdout or stderr through injection, a rotation bust and a Secret Manager failure', hooks, {
  more: () => [sm.subjectToken],
})

test('a corrupted payload (wrong CRC-32C) is never injected: the request fails closed and the check is logged', async () => {
  sm.corruptCrcNext(10)
  e2e.daemon.cache.clear()
  const before = e2e.up.received.length
  const r = await e2e.get('up', '/corrupted')
  assert.equal(r.status, 503, r.body)
  assert.equal(e2e.up.received.length, before, 'nothing reached the upstream')
  assert.ok(e2e.logs.lines().some((l) => l.includes('CRC32C_MISMATCH')), 'the provider code is logged')
  sm.corruptCrcNext(0)
})

test('a disabled latest version is logged as access_denied (FAILED_PRECONDITION) and the request fails closed', async () => {
  sm.setState('api-token', 'DISABLED')
  e2e.daemon.cache.clear()
  const r = await e2e.get('up', '/disabled')
  assert.equal(r.status, 503, r.body)
  assert.ok(e2e.logs.lines().some((l) => l.includes('FAILED_PRECONDITION disabled')), 'the provider code is logged')
})

testNoCanaryInLogs(e2e, 'no canary appears in any log line (trace level)', canaries)
