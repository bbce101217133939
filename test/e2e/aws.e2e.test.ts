import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { startDaemon, type Daemon } from '../../src/daemon.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { startAwsServer, type AwsServer } from '../servers/aws-server.ts'

process.env.AWS_EC2_METADATA_DISABLED = 'true'

const CANARY_1 = 'canary-e2e-aws-token-one-7d2b'
const CANARY_2 = 'canary-e2e-aws-token-two-4e6f'
const CANARY_KEY = 'canary-e2e-aws-apikey-9a1c'

let aws: AwsServer
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
  aws = await startAwsServer()
  aws.setSecret('prod/app', JSON.stringify({ token: CANARY_1, note: 'json secret' }))
  aws.setSecret('prod/flaky', CANARY_KEY)
  up = await startUpstream()
  up.handle((req, res) => {
    const ok = req.headers.host?.startsWith('localhost') ? req.headers['x-api-key'] === CANARY_KEY : req.headers.authorization === `Bearer ${current}`
    res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' })
    res.end(ok ? '{"ok":true}' : '{"error":"unauthorized"}')
  })
  daemon = await startDaemon({
    baseDir: '.',
    env: { AWS_ACCESS_KEY_ID: aws.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: aws.credentials.secretAccessKey, AWS_REGION: aws.region },
    logStream,
    processMetrics: false,
    waitReady: true,
    config: {
      listen: '127.0.0.1:0',
      admin: { listen: '127.0.0.1:0' },
      log: { level: 'trace' },
      cache: { ttl: '1h', maxStale: '1500ms', bustCooldown: '50ms', fetchTimeout: '2s', fetchAttempts: 2 },
      providers: { sm: { type: 'aws', endpoint: aws.url } },
      credentials: {
        app: { provider: 'sm', ref: 'prod/app', field: 'token', hosts: [`127.0.0.1:${up.port}`], inject: { type: 'bearer' }, insecure: true },
        flaky: { provider: 'sm', ref: 'prod/flaky', hosts: [`localhost:${up.port}`], inject: { type: 'header', header: 'X-Api-Key' }, insecure: true, ttl: '300ms' },
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
  await aws?.close()
  await up?.close()
})

async function get(route: string, p = '/x') {
  const res = await request(`${daemon.proxyUrl}/${route}${p}`)
  const body = await res.body.text()
  return { status: res.statusCode, body }
}

const reads = (id: string) => aws.log.filter((l) => l.secretId === id && l.target === 'secretsmanager.GetSecretValue').length

test('the daemon reads a SigV4-signed secret from Secrets Manager and injects one JSON field', async () => {
  const r = await get('up', '/api')
  assert.equal(r.status, 200, r.body)
  assert.equal(up.received.at(-1)?.headers.authorization, `Bearer ${CANARY_1}`)
  assert.ok(aws.log.every((l) => l.status === 200), 'every call was signed correctly')
})

test('many requests cost one provider call', async () => {
  const before = reads('prod/app')
  assert.equal(before, 1, 'prefetched once')
  const results = await Promise.all(Array.from({ length: 25 }, (_, i) => get('up', `/item/${i}`)))
  assert.ok(results.every((r) => r.status === 200))
  assert.equal(reads('prod/app'), before)
})

test('after a rotation the upstream 401 costs exactly one extra provider call and the request succeeds', async () => {
  const before = reads('prod/app')
  aws.rotate('prod/app', JSON.stringify({ token: CANARY_2, note: 'rotated' }))
  current = CANARY_2
  const r = await get('up', '/after-rotation')
  assert.equal(r.status, 200, r.body)
  assert.equal(reads('prod/app') - before, 1)
  assert.deepEqual(
    up.received.slice(-2).map((x) => x.headers.authorization),
    [`Bearer ${CANARY_1}`, `Bearer ${CANARY_2}`],
  )
  assert.equal((await get('up', '/again')).status, 200)
  assert.equal(reads('prod/app') - before, 1)
})

test('a failing Secrets Manager (InternalServiceError) is survived within maxStale, then fails closed, then recovers', async () => {
  assert.equal((await get('flaky')).status, 200)
  aws.failNext(1_000, 500, 'prod/flaky')
  await sleep(400) // past the 300 ms TTL
  const stale = await get('flaky', '/stale')
  assert.equal(stale.status, 200, 'served the stale value')
  assert.equal(up.received.at(-1)?.headers['x-api-key'], CANARY_KEY)
  await sleep(1_700) // past maxStale
  const failed = await get('flaky', '/too-stale')
  assert.equal(failed.status, 503, failed.body)
  assert.match(failed.body, /secret_unavailable/)
  aws.recover()
  const back = await get('flaky', '/recovered')
  assert.equal(back.status, 200, back.body)
})

test('throttling is retried by the daemon and counted in metrics', async () => {
  aws.throttleNext(1, 'prod/app', 0)
  daemon.cache.clear()
  const r = await get('up', '/after-throttle')
  assert.equal(r.status, 200, r.body)
  const metrics = await (await request(`${daemon.adminUrl}/metrics`)).body.text()
  assert.match(metrics, /latchkey_provider_throttled_total\{provider="sm"\} 1/)
})

test('no canary or AWS secret key appears in any log line', () => {
  assert.ok(lines.length > 20, 'trace logging captured lines')
  const canaries = [CANARY_1, CANARY_2, CANARY_KEY, aws.credentials.secretAccessKey]
  const forms = canaries.flatMap((c) => [c, Buffer.from(c).toString('base64'), encodeURIComponent(c)])
  for (const line of lines) for (const f of forms) assert.ok(!line.includes(f), `log line leaks a canary: ${line}`)
  assert.ok(lines.some((l) => l.includes('"providerCode":"InternalServiceError (HTTP 500)"')), 'the provider code is logged')
})
