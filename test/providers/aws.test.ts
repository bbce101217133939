import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import path from 'node:path'
import { Writable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import { inspect, promisify } from 'node:util'
import { pino } from 'pino'
import { ProviderError } from '../../src/errors.ts'
import { awsProvider } from '../../src/providers/aws.ts'
import type { ProviderContext, SecretProvider } from '../../src/providers/provider.ts'
import { startAwsServer, type AwsServer } from '../servers/aws-server.ts'

// The SDK's default chain reads process.env and would probe the instance metadata address.
process.env.AWS_EC2_METADATA_DISABLED = 'true'
process.env.NO_PROXY = '127.0.0.1,localhost'

const CANARY_STRING = 'canary-aws-string-6a5b4c'
const CANARY_JSON = { username: 'svc-canary', password: 'canary-aws-pass-19e8d7' }
const CANARY_BINARY = 'canary-aws-binary-0f9e8d'
const CANARY_SECRET_KEY = 'canary-wrong-secret-key-7c6b5a4938271605'
const CANARIES = [CANARY_STRING, CANARY_JSON.password, CANARY_BINARY, CANARY_SECRET_KEY]
const ROLE = 'arn:aws:iam::123456789012:role/latchkey-reader'

const lines: string[] = []
const logger = pino(
  { level: 'trace' },
  new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString('utf8'))
      cb()
    },
  }),
)
let s: AwsServer
let p: SecretProvider
const opened: SecretProvider[] = []

before(async () => {
  s = await startAwsServer({ roles: { [ROLE]: { externalId: 'ext-42' } } })
  s.setSecret('prod/app', 'old-' + CANARY_STRING)
  s.setSecret('prod/app', CANARY_STRING)
  s.setSecret('prod/warehouse', JSON.stringify(CANARY_JSON))
  s.setSecret('prod/binary', Buffer.from(CANARY_BINARY, 'utf8'))
  s.setSecret('prod/not-text', Buffer.from([0xc3, 0x28, 0xff]))
  p = await provider({})
})

after(async () => {
  await Promise.all(opened.map((x) => x.close?.()))
  await s.close()
  const secrets = [s.credentials.secretAccessKey, ...s.sessions.flatMap((c) => [c.secretAccessKey, c.sessionToken ?? ''])]
  for (const line of lines) for (const c of [...CANARIES, ...secrets]) assert.ok(!line.includes(c), `log line leaks a canary: ${line}`)
})

function keysEnv(creds = s.credentials): Record<string, string> {
  return { AWS_ACCESS_KEY_ID: creds.accessKeyId, AWS_SECRET_ACCESS_KEY: creds.secretAccessKey, ...(creds.sessionToken ? { AWS_SESSION_TOKEN: creds.sessionToken } : {}) }
}

async function provider(raw: Record<string, unknown>, env: Record<string, string | undefined> = keysEnv()): Promise<SecretProvider> {
  const options = awsProvider.optionsSchema.parse({ type: 'aws', region: s.region, endpoint: s.url, ...raw })
  const ctx: ProviderContext = { name: 'a', logger, env }
  const created = await awsProvider.create(options, ctx)
  opened.push(created)
  return created
}

const signal = () => AbortSignal.timeout(5_000)

async function rejectsWith(fn: () => Promise<unknown>, code: string, extra: (e: ProviderError) => void = () => undefined, secrets: string[] = []) {
  let caught: unknown
  await fn().then(
    () => assert.fail(`expected ${code}`),
    (e: unknown) => {
      caught = e
    },
  )
  assert.ok(caught instanceof ProviderError, `a ProviderError, got ${String(caught)}`)
  assert.equal(caught.code, code, caught.message)
  const views = [caught.message, String(caught), JSON.stringify(caught), inspect(caught, { depth: 10, showHidden: true }), String(caught.providerCode)]
  for (const c of [...CANARIES, s.credentials.secretAccessKey, ...secrets]) for (const v of views) assert.ok(!v.includes(c), `error leaks ${c}: ${v}`)
  extra(caught)
  return caught
}

describe('reading secrets', () => {
  test('a SecretString is returned as is, with its VersionId', async () => {
    const v = await p.fetch('prod/app', { signal: signal() })
    assert.equal(v.reveal(), CANARY_STRING)
    assert.match(v.version ?? '', /^[0-9a-f-]{36}$/)
    assert.equal(s.log.at(-1)?.target, 'secretsmanager.GetSecretValue')
  })

  test('a JSON SecretString comes back as its JSON text for field selection', async () => {
    assert.deepEqual(JSON.parse((await p.fetch('prod/warehouse', { signal: signal() })).reveal()), CANARY_JSON)
  })

  test('a secret is found by its ARN as well as its name', async () => {
    assert.equal((await p.fetch(s.arnOf('prod/app'), { signal: signal() })).reveal(), CANARY_STRING)
  })

  test('a SecretBinary holding UTF-8 text is decoded', async () => {
    assert.equal((await p.fetch('prod/binary', { signal: signal() })).reveal(), CANARY_BINARY)
  })

  test('a SecretBinary that is not UTF-8 text is invalid_secret', async () => {
    await rejectsWith(() => p.fetch('prod/not-text', { signal: signal() }), 'invalid_secret')
  })

  test('a version selects a VersionId, and stage:LABEL a staging label', async () => {
    const first = await p.fetch('prod/app', { signal: signal(), version: 'stage:AWSPREVIOUS' })
    assert.equal(first.reveal(), 'old-' + CANARY_STRING)
    assert.equal((await p.fetch('prod/app', { signal: signal(), version: first.version })).reveal(), 'old-' + CANARY_STRING)
  })

  test('the provider-wide versionStage applies when a credential names no version', async () => {
    const prev = await provider({ versionStage: 'AWSPREVIOUS' })
    assert.equal((await prev.fetch('prod/app', { signal: signal() })).reveal(), 'old-' + CANARY_STRING)
  })

  test('a rotated secret is read at the next fetch', async () => {
    s.setSecret('prod/rotating', CANARY_STRING + '-1')
    assert.equal((await p.fetch('prod/rotating', { signal: signal() })).reveal(), CANARY_STRING + '-1')
    s.rotate('prod/rotating', CANARY_STRING + '-2')
    assert.equal((await p.fetch('prod/rotating', { signal: signal() })).reveal(), CANARY_STRING + '-2')
  })

  test('region and endpoint come from the environment when the config omits them', async () => {
    const options = awsProvider.optionsSchema.parse({ type: 'aws' })
    const fromEnv = await awsProvider.create(options, { name: 'a', logger, env: { ...keysEnv(), AWS_DEFAULT_REGION: s.region, AWS_ENDPOINT_URL_SECRETS_MANAGER: s.url } })
    opened.push(fromEnv)
    assert.equal((await fromEnv.fetch('prod/app', { signal: signal() })).reveal(), CANARY_STRING)
  })

  test('no region at all is a provider_config error at create', async () => {
    await assert.rejects(awsProvider.create(awsProvider.optionsSchema.parse({ type: 'aws' }), { name: 'a', logger, env: {} }), (e: ProviderError) => e.code === 'provider_config')
  })

  test('the options schema rejects unknown keys and malformed ARNs and regions', () => {
    assert.equal(awsProvider.optionsSchema.safeParse({ type: 'aws', regoin: 'eu-west-1' }).success, false)
    assert.equal(awsProvider.optionsSchema.safeParse({ type: 'aws', roleArn: 'reader' }).success, false)
    assert.equal(awsProvider.optionsSchema.safeParse({ type: 'aws', region: 'Europe' }).success, false)
  })
})

describe('credentials', () => {
  test('session credentials from the environment are signed with their session token', async () => {
    const sess = await startAwsServer({ credentials: [{ accessKeyId: 'ASIATESTSESSION00001', secretAccessKey: 'session-secret-key-000000000000000000', sessionToken: 'session-token-abc' }] })
    try {
      sess.setSecret('x', CANARY_STRING)
      const sp = await awsProvider.create(awsProvider.optionsSchema.parse({ type: 'aws', region: sess.region, endpoint: sess.url }), { name: 'a', logger, env: keysEnv(sess.credentials) })
      opened.push(sp)
      assert.equal((await sp.fetch('x', { signal: signal() })).reveal(), CANARY_STRING)
      const noToken = await awsProvider.create(awsProvider.optionsSchema.parse({ type: 'aws', region: sess.region, endpoint: sess.url }), {
        name: 'a',
        logger,
        env: { AWS_ACCESS_KEY_ID: sess.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: sess.credentials.secretAccessKey },
      })
      opened.push(noToken)
      await rejectsWith(() => noToken.fetch('x', { signal: signal() }), 'provider_auth_failed', (e) => assert.equal(e.providerCode, 'UnrecognizedClientException (HTTP 400)'), [sess.credentials.secretAccessKey])
    } finally {
      await sess.close()
    }
  })

  test('a wrong secret key fails SigV4 verification and maps to provider_auth_failed', async () => {
    const wrong = await provider({}, keysEnv({ accessKeyId: s.credentials.accessKeyId, secretAccessKey: CANARY_SECRET_KEY }))
    await rejectsWith(() => wrong.fetch('prod/app', { signal: signal() }), 'provider_auth_failed', (e) => {
      assert.equal(e.providerCode, 'InvalidSignatureException (HTTP 400)')
      assert.equal(e.retryable, false)
    })
  })

  test('an unknown or revoked access key is provider_auth_failed', async () => {
    const unknown = await provider({}, keysEnv({ accessKeyId: 'AKIAUNKNOWN000000000', secretAccessKey: CANARY_SECRET_KEY }))
    await rejectsWith(() => unknown.fetch('prod/app', { signal: signal() }), 'provider_auth_failed', (e) => assert.equal(e.providerCode, 'UnrecognizedClientException (HTTP 400)'))
  })

  test('a request signed for another region is refused by the server', async () => {
    const other = await provider({ region: 'us-east-2' })
    await rejectsWith(() => other.fetch('prod/app', { signal: signal() }), 'provider_auth_failed')
  })

  test('roleArn is assumed through STS (with ExternalId) and the session keys read the secret', async () => {
    const before = s.requestCount('AssumeRole')
    const r = await provider({ roleArn: ROLE, externalId: 'ext-42', stsEndpoint: s.url, roleSessionName: 'pipeline-a' })
    assert.equal((await r.fetch('prod/app', { signal: signal() })).reveal(), CANARY_STRING)
    assert.equal((await r.fetch('prod/warehouse', { signal: signal() })).reveal(), JSON.stringify(CANARY_JSON))
    assert.equal(s.requestCount('AssumeRole') - before, 1, 'the session is reused')
    const session = s.sessions.at(-1)
    assert.equal(session?.sessionName, 'pipeline-a')
    assert.equal(s.log.at(-1)?.accessKeyId, session?.accessKeyId)
    const c = await r.check!(signal())
    assert.deepEqual([c.reachable, c.authenticated, c.identity], [true, true, 'arn:aws:sts::123456789012:assumed-role/latchkey-reader/pipeline-a'])
    assert.equal(s.log.filter((l) => l.target === 'sts.GetCallerIdentity').at(-1)?.accessKeyId, session?.accessKeyId, 'STS saw the session key')
  })

  test('a role whose trust policy refuses us is provider_auth_failed', async () => {
    const r = await provider({ roleArn: ROLE, externalId: 'wrong-ext', stsEndpoint: s.url })
    await rejectsWith(() => r.fetch('prod/app', { signal: signal() }), 'provider_auth_failed', (e) => assert.equal(e.providerCode, 'AccessDenied (HTTP 403)'))
    const c = await r.check!(signal())
    assert.equal(c.authenticated, false)
  })

  test('no credentials from any source is provider_auth_failed', async () => {
    // The SDK chain reads process.env and ~/.aws; with nothing there (and IMDS disabled) it finds nothing.
    // Keys found anyway are unknown to the local server: the same mapped code.
    const none = await provider({}, {})
    await rejectsWith(() => none.fetch('prod/app', { signal: signal() }), 'provider_auth_failed')
  })

  test('check contacts Secrets Manager (ListSecrets) and names the caller by the ARN STS GetCallerIdentity returns', async () => {
    const before = { list: s.requestCount('ListSecrets'), who: s.requestCount('GetCallerIdentity') }
    const c = await provider({ stsEndpoint: s.url }).then((x) => x.check!(signal()))
    assert.deepEqual([c.reachable, c.authenticated, c.identity], [true, true, 'arn:aws:iam::123456789012:user/latchkey-test'])
    assert.deepEqual([s.requestCount('ListSecrets') - before.list, s.requestCount('GetCallerIdentity') - before.who], [1, 1])
    const last = s.log.filter((l) => l.target === 'sts.GetCallerIdentity').at(-1)
    assert.deepEqual([last?.status, last?.accessKeyId], [200, s.credentials.accessKeyId], 'signed with the configured key and verified')
    assert.ok(!JSON.stringify(c).includes(s.credentials.accessKeyId))
  })

  test('check treats a ListSecrets denial (least privilege) as reachable and authenticated', async () => {
    s.denyList(s.credentials.accessKeyId)
    const c = await provider({ stsEndpoint: s.url }).then((x) => x.check!(signal()))
    assert.deepEqual([c.reachable, c.authenticated], [true, true])
    assert.equal(s.log.filter((l) => l.secretId === 'ListSecrets').at(-1)?.status, 400)
  })

  test('check reports an unreachable Secrets Manager as unreachable even when the credentials resolve', async () => {
    const gone = await startAwsServer()
    const url = gone.url
    await gone.close()
    const c = await provider({ endpoint: url, stsEndpoint: s.url }).then((x) => x.check!(signal()))
    assert.deepEqual([c.reachable, c.authenticated], [false, false])
    assert.match(c.detail ?? '', /cannot reach Secrets Manager/)
  })

  test('check reports a key Secrets Manager refuses as reachable but not authenticated', async () => {
    const c = await provider({ stsEndpoint: s.url }, keysEnv({ accessKeyId: 'AKIAUNKNOWN000000000', secretAccessKey: CANARY_SECRET_KEY })).then((x) => x.check!(signal()))
    assert.deepEqual([c.reachable, c.authenticated], [true, false])
    assert.match(c.detail ?? '', /UnrecognizedClientException/)
  })

  test('check still passes, naming the key by its first four characters, when STS cannot be reached', async () => {
    const gone = await startAwsServer()
    const url = gone.url
    await gone.close()
    const c = await provider({ stsEndpoint: url }).then((x) => x.check!(signal()))
    assert.deepEqual([c.reachable, c.authenticated, c.identity], [true, true, 'access key AKIA…'])
    assert.match(c.detail ?? '', /STS GetCallerIdentity failed: provider_unavailable \(ECONNREFUSED\)/)
    assert.ok(!JSON.stringify(c).includes(s.credentials.accessKeyId))
  })
})

describe('error mapping', () => {
  test('a missing secret is secret_not_found', async () => {
    await rejectsWith(() => p.fetch('prod/nope', { signal: signal() }), 'secret_not_found', (e) => {
      assert.equal(e.providerCode, 'ResourceNotFoundException (HTTP 400)')
      assert.equal(e.retryable, false)
    })
    await rejectsWith(() => p.fetch('prod/app', { signal: signal(), version: '00000000-0000-0000-0000-000000000000' }), 'secret_not_found')
  })

  test('an IAM denial and a KMS decryption failure are access_denied', async () => {
    s.setSecret('prod/denied', CANARY_STRING)
    s.denyAccess('prod/denied', s.credentials.accessKeyId)
    await rejectsWith(() => p.fetch('prod/denied', { signal: signal() }), 'access_denied', (e) => assert.equal(e.providerCode, 'AccessDeniedException (HTTP 400)'))
    s.setSecret('prod/kms', CANARY_STRING)
    s.failDecryption('prod/kms')
    await rejectsWith(() => p.fetch('prod/kms', { signal: signal() }), 'access_denied', (e) => assert.match(e.message, /kms:Decrypt/))
  })

  test('a secret marked for deletion is secret_not_found and says so', async () => {
    s.setSecret('prod/deleted', CANARY_STRING)
    s.markDeleted('prod/deleted')
    await rejectsWith(() => p.fetch('prod/deleted', { signal: signal() }), 'secret_not_found', (e) => assert.match(e.message, /marked for deletion/))
  })

  test('a malformed VersionId is provider_config', async () => {
    await rejectsWith(() => p.fetch('prod/app', { signal: signal(), version: 'v1' }), 'provider_config')
  })

  test('throttling is throttled, retryable, with retryAfterMs from retry-after', async () => {
    s.throttleNext(1, 'prod/app', 2)
    await rejectsWith(() => p.fetch('prod/app', { signal: signal() }), 'throttled', (e) => {
      assert.equal(e.retryable, true)
      assert.equal(e.retryAfterMs, 2_000)
      assert.equal(e.providerCode, 'ThrottlingException (HTTP 400)')
    })
    s.throttleNext(1, 'prod/app')
    await rejectsWith(() => p.fetch('prod/app', { signal: signal() }), 'throttled', (e) => assert.equal(e.retryAfterMs, undefined))
  })

  test('InternalServiceError and 503 are provider_unavailable and retryable', async () => {
    s.failNext(1, 500, 'prod/app')
    await rejectsWith(() => p.fetch('prod/app', { signal: signal() }), 'provider_unavailable', (e) => {
      assert.equal(e.providerCode, 'InternalServiceError (HTTP 500)')
      assert.equal(e.retryable, true)
    })
    s.failNext(1, 503, 'prod/app', 'ServiceUnavailable')
    await rejectsWith(() => p.fetch('prod/app', { signal: signal() }), 'provider_unavailable')
  })

  test('one call per fetch: the SDK does not retry on its own', async () => {
    const before = s.requestCount('prod/app')
    s.failNext(1, 500, 'prod/app')
    await rejectsWith(() => p.fetch('prod/app', { signal: signal() }), 'provider_unavailable')
    assert.equal(s.requestCount('prod/app') - before, 1)
  })

  test('a refused connection is provider_unavailable', async () => {
    const gone = await startAwsServer()
    const url = gone.url
    await gone.close()
    const dead = await provider({ endpoint: url })
    await rejectsWith(() => dead.fetch('prod/app', { signal: signal() }), 'provider_unavailable', (e) => assert.equal(e.providerCode, 'ECONNREFUSED'))
  })

  test('a slow endpoint is provider_timeout as soon as the signal fires', async () => {
    s.setLatency(1_000, 'prod/app')
    try {
      const started = performance.now()
      await rejectsWith(() => p.fetch('prod/app', { signal: AbortSignal.timeout(100) }), 'provider_timeout')
      assert.ok(performance.now() - started < 600)
    } finally {
      s.setLatency(0)
    }
  })

  test('an already aborted signal sends nothing', async () => {
    const before = s.requestCount()
    const ac = new AbortController()
    ac.abort()
    await rejectsWith(() => p.fetch('prod/app', { signal: ac.signal }), 'provider_timeout')
    assert.equal(s.requestCount(), before)
  })

  test('the server refuses a request whose content type is not awsJson1_1', async () => {
    const res = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/cbor', 'x-amz-target': 'secretsmanager.GetSecretValue' }, body: '{}' })
    assert.equal(res.status, 400)
    assert.equal(((await res.json()) as { __type: string }).__type, 'UnsupportedMediaTypeException')
  })

  test('the server refuses a request whose body was changed after signing', async () => {
    const { SignatureV4 } = await import('@smithy/signature-v4')
    const { Sha256 } = await import('@aws-crypto/sha256-js')
    const signer = new SignatureV4({ credentials: s.credentials, region: s.region, service: 'secretsmanager', sha256: Sha256 })
    const host = new URL(s.url).host
    const body = JSON.stringify({ SecretId: 'prod/app' })
    const signed = await signer.sign({
      method: 'POST',
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: s.port,
      path: '/',
      headers: { host, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'secretsmanager.GetSecretValue' },
      body,
    })
    const headers = signed.headers as Record<string, string>
    const ok = await fetch(s.url, { method: 'POST', headers, body })
    assert.equal(ok.status, 200)
    await ok.body?.cancel()
    const tampered = await fetch(s.url, { method: 'POST', headers, body: JSON.stringify({ SecretId: 'prod/warehouse' }) })
    assert.equal(tampered.status, 400)
    assert.equal(((await tampered.json()) as { __type: string }).__type, 'InvalidSignatureException')
  })
})

test('importing the provider module does not load the AWS SDK; creating a provider does', async () => {
  const script = `
    import { createRequire } from 'node:module'
    const { awsProvider } = await import(${JSON.stringify(path.resolve('src/providers/aws.ts'))})
    const require = createRequire(import.meta.url)
    const loaded = () => Object.keys(require.cache).some((k) => k.includes('@aws-sdk'))
    const before = loaded()
    await awsProvider.create(awsProvider.optionsSchema.parse({ type: 'aws', region: 'eu-west-1' }), { name: 'a', env: {}, logger: {} })
    console.log(JSON.stringify([before, loaded()]))`
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: process.cwd() })
  assert.deepEqual(JSON.parse(stdout), [false, true])
})
