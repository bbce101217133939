import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { getEventListeners } from 'node:events'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { inspect } from 'node:util'
import * as grpc from '@grpc/grpc-js'
import pino from 'pino'
import { ProviderError } from '../../src/errors.ts'
import { crc32c } from '../../src/providers/crc32c.ts'
import { gcpProvider, resourceName } from '../../src/providers/gcp.ts'
import type { SecretProvider } from '../../src/providers/provider.ts'
import { assertNoCanary } from '../helpers/log-capture.ts'
import { createTestCa, type TestCa } from '../helpers/test-ca.ts'
import { startGcpServer, type GcpServer } from '../servers/gcp-server.ts'

// google-auth-library's HTTP client honours proxy variables; the STS endpoint is on loopback.
process.env.NO_PROXY = '127.0.0.1,localhost'
for (const k of ['GOOGLE_APPLICATION_CREDENTIALS', 'GOOGLE_CLOUD_PROJECT', 'GCLOUD_PROJECT']) delete process.env[k]

const CANARY = 'lk-canary-gcp-3e8a71c04f5d'
const CANARY_OLD = 'lk-canary-gcp-old-d29b6e1a77'
const thrown: unknown[] = []
const providers: SecretProvider[] = []

let ca: TestCa
let server: GcpServer
let dir: string
const logger = pino({ level: 'silent' })

/** A provider pointed at the local server over TLS (test CA via caFile) with Workload Identity Federation credentials. */
async function create(extra: Record<string, unknown> = {}, env: Record<string, string> = {}, target: GcpServer = server): Promise<SecretProvider> {
  const options = gcpProvider.optionsSchema.parse({
    type: 'gcp',
    project: target.projectId,
    apiEndpoint: '127.0.0.1',
    port: target.port,
    credentialsFile: credentialsFor(target),
    caFile: path.join(dir, 'ca.pem'),
    ...extra,
  })
  const p = await gcpProvider.create(options, { name: 'sm', logger, env })
  providers.push(p)
  return p
}

function credentialsFor(target: GcpServer): string {
  const subject = path.join(dir, `subject-${target.port}`)
  const file = path.join(dir, `credentials-${target.port}.json`)
  writeFileSync(subject, target.subjectToken)
  writeFileSync(file, target.externalAccountJson(subject))
  return file
}

async function rejects(p: Promise<unknown>, code: string, message?: RegExp): Promise<ProviderError> {
  try {
    await p
  } catch (err) {
    thrown.push(err)
    assert.ok(err instanceof ProviderError, `expected a ProviderError, got ${String(err)}`)
    assert.equal(err.code, code, err.message)
    if (message) assert.match(err.message, message)
    return err
  }
  assert.fail(`expected a rejection with ${code}`)
}

const signal = () => AbortSignal.timeout(15_000)

before(async () => {
  ca = await createTestCa()
  dir = mkdtempSync(path.join(tmpdir(), 'lk-gcp-'))
  writeFileSync(path.join(dir, 'ca.pem'), ca.caPem)
  server = await startGcpServer({ tls: await ca.issue(['127.0.0.1']) })
})

after(async () => {
  await Promise.allSettled(providers.map((p) => p.close?.()))
  await server.close()
})

describe('CRC-32C', () => {
  test('matches the Castagnoli check value and known vectors', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 3808858755)
    assert.equal(crc32c(Buffer.alloc(0)), 0)
    assert.equal(crc32c(Buffer.alloc(32)), 0x8a9136aa)
    assert.equal(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43)
  })
})

describe('gcp provider against a local Secret Manager (gRPC over TLS, STS token exchange)', () => {
  let sm: SecretProvider
  before(async () => {
    sm = await create()
  })

  test('fetches the latest version with a verified CRC and reports its numeric version', async () => {
    server.setSecret('api-token', CANARY_OLD)
    server.setSecret('api-token', CANARY)
    const tokensBefore = server.requestCount('token')
    const value = await sm.fetch('api-token', { signal: signal() })
    assert.equal(value.reveal(), CANARY)
    assert.equal(value.version, '2')
    assert.ok(server.requestCount('token') > tokensBefore, 'the token came from the STS exchange')
  })

  test('each fetch is one call to the service (SDK retries add nothing)', async () => {
    const before = server.requestCount()
    await sm.fetch('api-token', { signal: signal() })
    assert.equal(server.requestCount(), before + 1)
  })

  test('a credential version, a full name (project id or number) and a regional name select the version', async () => {
    assert.equal((await sm.fetch('api-token', { signal: signal(), version: '1' })).reveal(), CANARY_OLD)
    assert.equal((await sm.fetch(`projects/${server.projectId}/secrets/api-token/versions/1`, { signal: signal() })).reveal(), CANARY_OLD)
    assert.equal((await sm.fetch(`projects/${server.projectNumber}/secrets/api-token`, { signal: signal() })).reveal(), CANARY)
    assert.equal((await sm.fetch(`projects/${server.projectId}/locations/europe-west1/secrets/api-token/versions/latest`, { signal: signal() })).reveal(), CANARY)
    await rejects(sm.fetch(`projects/${server.projectId}/secrets/api-token/versions/1`, { signal: signal(), version: '2' }), 'provider_config', /asks for version/)
  })

  test('a rotated secret is returned at the next fetch', async () => {
    server.setSecret('rotating', CANARY_OLD)
    assert.equal((await sm.fetch('rotating', { signal: signal() })).reveal(), CANARY_OLD)
    const v = server.rotate('rotating', CANARY)
    const got = await sm.fetch('rotating', { signal: signal() })
    assert.equal(got.reveal(), CANARY)
    assert.equal(got.version, String(v))
  })

  test('secret ids are case-sensitive, as in Secret Manager', async () => {
    await rejects(sm.fetch('API-TOKEN', { signal: signal() }), 'secret_not_found')
  })

  test('a wrong CRC-32C is invalid_secret and the value is not accepted', async () => {
    server.corruptCrcNext(1, 'wrong')
    const err = await rejects(sm.fetch('api-token', { signal: signal() }), 'invalid_secret', /CRC-32C mismatch/)
    assert.equal(err.providerCode, 'CRC32C_MISMATCH')
    assert.equal(err.retryable, false)
  })

  test('a missing CRC-32C is invalid_secret', async () => {
    server.corruptCrcNext(1, 'missing')
    await rejects(sm.fetch('api-token', { signal: signal() }), 'invalid_secret', /no dataCrc32c/)
  })

  test('a disabled latest version is access_denied saying disabled, with no fallback; destroyed says destroyed', async () => {
    server.setSecret('disabled', CANARY_OLD)
    server.setSecret('disabled', CANARY)
    server.setState('disabled', 'DISABLED')
    const err = await rejects(sm.fetch('disabled', { signal: signal() }), 'access_denied', /disabled/)
    assert.match(err.providerCode ?? '', /FAILED_PRECONDITION/)
    server.setState('disabled', 'DESTROYED')
    await rejects(sm.fetch('disabled', { signal: signal() }), 'access_denied', /destroyed/)
    assert.equal((await sm.fetch('disabled', { signal: signal(), version: '1' })).reveal(), CANARY_OLD)
  })

  test('a missing secret or version is secret_not_found', async () => {
    await rejects(sm.fetch('does-not-exist', { signal: signal() }), 'secret_not_found')
    await rejects(sm.fetch('api-token', { signal: signal(), version: '99' }), 'secret_not_found')
  })

  test('PERMISSION_DENIED is access_denied naming the role to grant', async () => {
    server.setSecret('forbidden', CANARY)
    server.deny('forbidden')
    const err = await rejects(sm.fetch('forbidden', { signal: signal() }), 'access_denied', /secretAccessor/)
    assert.equal(err.providerCode, 'PERMISSION_DENIED')
  })

  test('RESOURCE_EXHAUSTED is throttled and retryable, and the SDK does not retry it', async () => {
    server.throttleNext(1)
    const before = server.requestCount()
    const err = await rejects(sm.fetch('api-token', { signal: signal() }), 'throttled')
    assert.equal(err.retryable, true)
    assert.equal(server.requestCount(), before + 1)
  })

  test('UNAVAILABLE and INTERNAL are provider_unavailable, DEADLINE_EXCEEDED provider_timeout, all retryable and not retried by the SDK', async () => {
    for (const [code, expected] of [
      [grpc.status.UNAVAILABLE, 'provider_unavailable'],
      [grpc.status.INTERNAL, 'provider_unavailable'],
      [grpc.status.DEADLINE_EXCEEDED, 'provider_timeout'],
    ] as const) {
      server.failNext(1, code)
      const before = server.requestCount()
      const err = await rejects(sm.fetch('api-token', { signal: signal() }), expected)
      assert.equal(err.retryable, true)
      assert.equal(server.requestCount(), before + 1)
    }
  })

  test('INVALID_ARGUMENT is provider_config', async () => {
    server.failNext(1, grpc.status.INVALID_ARGUMENT, 'Invalid resource field value in the request.')
    const err = await rejects(sm.fetch('api-token', { signal: signal() }), 'provider_config')
    assert.equal(err.retryable, false)
  })

  test('a slow service is cancelled by the signal as provider_timeout', async () => {
    server.setLatency(3_000)
    try {
      const started = performance.now()
      await rejects(sm.fetch('api-token', { signal: AbortSignal.timeout(200) }), 'provider_timeout')
      assert.ok(performance.now() - started < 2_000)
    } finally {
      server.setLatency(0)
    }
  })

  test('a payload that is not UTF-8 is invalid_secret', async () => {
    server.setSecret('binary', Buffer.from([0xff, 0xfe, 0x00, 0x80]))
    await rejects(sm.fetch('binary', { signal: signal() }), 'invalid_secret', /UTF-8/)
  })

  test('refs that are neither secret ids nor resource names are provider_config', async () => {
    for (const ref of ['a/b', '../x', 'projects/p/secrets/s/versions/latest/extra', 'projects/p/keys/k', 'name with space', 'projects/p/secrets/s/versions/0']) {
      await rejects(sm.fetch(ref, { signal: signal() }), 'provider_config')
    }
  })

  test('check reports the credentials and a reachable endpoint', async () => {
    const r = await sm.check!(signal())
    assert.equal(r.reachable, true)
    assert.equal(r.authenticated, true)
    assert.match(r.identity ?? '', /credentials file/)
    assert.doesNotMatch(JSON.stringify(r), /ya29\./)
  })

  test('check leaves no abort listener behind on the signal it was given', async () => {
    const ctrl = new AbortController()
    for (let i = 0; i < 3; i++) assert.equal((await sm.check!(ctrl.signal)).authenticated, true)
    assert.equal(getEventListeners(ctrl.signal, 'abort').length, 0)
  })
})

describe('gcp provider authentication', () => {
  test('a revoked access token is provider_auth_failed (UNAUTHENTICATED)', async () => {
    const other = await startGcpServer({ tls: await ca.issue(['127.0.0.1']) })
    try {
      other.setSecret('s', CANARY)
      const p = await create({}, {}, other)
      assert.equal((await p.fetch('s', { signal: signal() })).reveal(), CANARY)
      other.revokeTokens()
      const err = await rejects(p.fetch('s', { signal: signal() }), 'provider_auth_failed')
      assert.equal(err.providerCode, 'UNAUTHENTICATED')
    } finally {
      await other.close()
    }
  })

  test('a failing token exchange is provider_auth_failed', async () => {
    const other = await startGcpServer({ tls: await ca.issue(['127.0.0.1']) })
    try {
      other.setSecret('s', CANARY)
      other.failTokensNext(1, 400)
      const p = await create({}, {}, other)
      await rejects(p.fetch('s', { signal: signal() }), 'provider_auth_failed')
      assert.equal(other.requestCount(), 0, 'no call reached the service without a token')
    } finally {
      await other.close()
    }
  })

  test('a server certificate from an untrusted CA is refused (TLS verification stays on)', async () => {
    const other = await startGcpServer({ tls: await (await createTestCa()).issue(['127.0.0.1']) })
    try {
      other.setSecret('s', CANARY)
      const p = await create({}, {}, other)
      await rejects(p.fetch('s', { signal: signal() }), 'provider_unavailable')
      assert.equal(other.requestCount(), 0)
    } finally {
      await other.close()
    }
  })

  test('a credentials file that does not exist is provider_auth_failed, leaves no unhandled rejection, and is picked up once it appears', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown) => unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    try {
      const file = path.join(dir, 'appears-later.json')
      const p = await create({ credentialsFile: file })
      await rejects(p.fetch('api-token', { signal: signal() }), 'provider_auth_failed')
      await rejects(p.fetch('api-token', { signal: signal() }), 'provider_auth_failed')
      writeFileSync(file, server.externalAccountJson(path.join(dir, `subject-${server.port}`)))
      assert.equal((await p.fetch('api-token', { signal: signal() })).reveal(), CANARY)
      await new Promise((r) => setTimeout(r, 100))
      assert.equal(unhandled.length, 0, `unhandled rejections: ${unhandled.length}`)
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })

  test('a missing caFile is provider_config at creation', async () => {
    await assert.rejects(create({ caFile: path.join(dir, 'missing.pem') }), (e: unknown) => e instanceof ProviderError && e.code === 'provider_config')
  })
})

describe('gcp project and resource names', () => {
  test('GOOGLE_CLOUD_PROJECT from the env record stands in for project', async () => {
    const p = await create({ project: undefined }, { GOOGLE_CLOUD_PROJECT: server.projectId })
    assert.equal((await p.fetch('api-token', { signal: signal() })).reveal(), CANARY)
  })

  test('resourceName builds canonical names and refuses smuggled segments', () => {
    assert.equal(resourceName('s', undefined, 'p', 'w'), 'projects/p/secrets/s/versions/latest')
    assert.equal(resourceName('s', '3', 'p', 'w'), 'projects/p/secrets/s/versions/3')
    assert.equal(resourceName('projects/q/secrets/s', undefined, 'p', 'w'), 'projects/q/secrets/s/versions/latest')
    assert.equal(resourceName('projects/q/locations/us-east1/secrets/s/versions/2', undefined, undefined, 'w'), 'projects/q/locations/us-east1/secrets/s/versions/2')
    assert.throws(() => resourceName('s', undefined, undefined, 'w'), /no project/)
    assert.throws(() => resourceName('s', 'latest/../1', 'p', 'w'), /version/)
    assert.throws(() => resourceName('projects/p%2F/secrets/s', undefined, undefined, 'w'), /project/)
  })

  test('options refuse an apiEndpoint with a scheme and unknown keys', () => {
    assert.equal(gcpProvider.optionsSchema.safeParse({ type: 'gcp', apiEndpoint: 'https://secretmanager.googleapis.com' }).success, false)
    assert.equal(gcpProvider.optionsSchema.safeParse({ type: 'gcp', apiEndpoint: 'secretmanager.europe-west1.rep.googleapis.com', port: 443 }).success, true)
    assert.equal(gcpProvider.optionsSchema.safeParse({ type: 'gcp', retries: 2 }).success, false)
  })
})

describe('gcp SDK debug logging', () => {
  test('GOOGLE_SDK_NODE_LOGGING does not make the client print a fetched payload', async () => {
    // The client logs each response (payload as a byte array) when this names it; latchkey silences that logger.
    process.env.GOOGLE_SDK_NODE_LOGGING = 'secret-manager'
    server.setSecret('logged', CANARY)
    const written: string[] = []
    const original = process.stderr.write.bind(process.stderr)
    try {
      const p = await create()
      process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
        written.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'))
        return (original as (...a: unknown[]) => boolean)(chunk, ...rest)
      }) as typeof process.stderr.write
      assert.equal((await p.fetch('logged', { signal: signal() })).reveal(), CANARY)
    } finally {
      process.stderr.write = original
      delete process.env.GOOGLE_SDK_NODE_LOGGING
    }
    const bytes = [...Buffer.from(CANARY)].join(',')
    assert.ok(!written.some((w) => w.includes(bytes)), 'the payload bytes were printed')
    assertNoCanary(written, [CANARY])
  })
})

describe('gcp errors never carry secret values', () => {
  test('no thrown error holds a canary in its message, String, JSON or inspect output', () => {
    assert.ok(thrown.length > 10, `only ${thrown.length} errors were captured`)
    const outputs = thrown.flatMap((e) => [String(e), (e as Error).message, JSON.stringify(e), inspect(e, { depth: 8, showHidden: true }), (e as Error).stack ?? ''])
    assertNoCanary(outputs, [CANARY, CANARY_OLD])
  })
})
