import assert from 'node:assert/strict'
import { test } from 'node:test'
import { providerE2e, testBinNoCanary, testNoCanaryInLogs, testSharedProviderScenarios, type ProviderCanaries, type ProviderScenarioHooks } from '../helpers/provider-e2e.ts'
import { startAwsServer, type AwsServer } from '../servers/aws-server.ts'

process.env.AWS_EC2_METADATA_DISABLED = 'true'

const canaries: ProviderCanaries = { first: 'canary-e2e-aws-token-one-7d2b', second: 'canary-e2e-aws-token-two-4e6f', key: 'canary-e2e-aws-apikey-9a1c' }

let aws: AwsServer

const e2e = providerE2e(
  'sm',
  canaries,
  async () => {
    aws = await startAwsServer()
    aws.setSecret('prod/app', JSON.stringify({ token: canaries.first, note: 'json secret' }))
    aws.setSecret('prod/flaky', canaries.key)
    return {
      provider: { type: 'aws', endpoint: aws.url },
      app: { ref: 'prod/app', field: 'token' },
      flaky: { ref: 'prod/flaky' },
      fetchAttempts: 2,
      env: { AWS_ACCESS_KEY_ID: aws.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: aws.credentials.secretAccessKey, AWS_REGION: aws.region },
    }
  },
  async () => {
    await aws?.close()
  },
)

const reads = (id: string) => aws.log.filter((l) => l.secretId === id && l.target === 'secretsmanager.GetSecretValue').length

test('the daemon reads a SigV4-signed secret from Secrets Manager and injects one JSON field', async () => {
  const r = await e2e.get('up', '/api')
  assert.equal(r.status, 200, r.body)
  assert.equal(e2e.up.received.at(-1)?.headers.authorization, `Bearer ${canaries.first}`)
  assert.ok(aws.log.every((l) => l.status === 200), 'every call was signed correctly')
})

const hooks: ProviderScenarioHooks = {
  canaries,
  appCalls: () => reads('prod/app'),
  flakyCalls: () => reads('prod/flaky'),
  rotate: (second) => aws.rotate('prod/app', JSON.stringify({ token: second, note: 'rotated' })),
  failFlaky: () => aws.failNext(1_000, 500, 'prod/flaky'),
  recover: () => aws.recover(),
  throttleApp: () => aws.throttleNext(1, 'prod/app', 0),
  failureTest: 'a failing Secrets Manager (InternalServiceError) is survived within maxStale, then fails closed, then recovers',
  throttleTest: 'throttling is retried by the daemon and counted in metrics',
}

testSharedProviderScenarios(e2e, hooks)

testBinNoCanary(e2e, 'the real bin at trace level prints no canary or AWS secret key on stdout or stderr through injection, a rotation bust and a Secrets Manager failure', hooks, {
  more: () => [aws.credentials.secretAccessKey],
})

testNoCanaryInLogs(e2e, 'no canary or AWS secret key appears in any log line', canaries, {
  more: () => [aws.credentials.secretAccessKey],
  logged: { text: '"providerCode":"InternalServiceError (HTTP 500)"', why: 'the provider code is logged' },
})
