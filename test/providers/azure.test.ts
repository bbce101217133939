import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { inspect } from 'node:util'
import pino from 'pino'
import { ProviderError } from '../../src/errors.ts'
import { azureProvider, tokenIdentity } from '../../src/providers/azure.ts'
import type { SecretProvider } from '../../src/providers/provider.ts'
import { assertNoCanary } from '../helpers/log-capture.ts'
import { createTestCa, type TestCa } from '../helpers/test-ca.ts'
import { startAzureServer, type AzureServer } from '../servers/azure-server.ts'

// The Azure identity SDK (MSAL) reads IDENTITY_ENDPOINT / IDENTITY_HEADER from the process
// environment, not from the provider's env record: each test file is its own process.
for (const k of Object.keys(process.env)) if (k.startsWith('AZURE_') || k.startsWith('IDENTITY_') || k.startsWith('MSI_')) delete process.env[k]
process.env.NO_PROXY = '127.0.0.1,localhost'

const CANARY = 'lk-canary-azure-6f1d9c27e4b8'
const CANARY_OLD = 'lk-canary-azure-old-91ab55d0c3'
const thrown: unknown[] = []

let ca: TestCa
let server: AzureServer
const logger = pino({ level: 'silent' })

/** `ctxCa: null` = no `upstream.caFile` CA. */
async function create(extra: Record<string, unknown> = {}, ctxCa: string | null = ca.caPem): Promise<SecretProvider> {
  const options = azureProvider.optionsSchema.parse({ type: 'azure', vaultUrl: server.vaultUrl, disableChallengeResourceVerification: true, ...extra })
  return azureProvider.create(options, { name: 'kv', logger, env: {}, ca: ctxCa ?? undefined })
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
  server = await startAzureServer({ tls: await ca.issue(['127.0.0.1']), tokenTtl: 60, plain: true })
  process.env.IDENTITY_ENDPOINT = server.identityEndpoint
  process.env.IDENTITY_HEADER = server.identityHeader
})

after(async () => {
  await server.close()
})

describe('azure provider against a local Key Vault (HTTPS, challenge auth, managed identity)', () => {
  let kv: SecretProvider
  before(async () => {
    kv = await create()
  })

  test('fetches the latest version through the challenge and the managed-identity token endpoint', async () => {
    const v1 = server.setSecret('api-token', CANARY_OLD)
    const v2 = server.setSecret('api-token', CANARY)
    assert.notEqual(v1, v2)
    const tokensBefore = server.requestCount('token')
    const value = await kv.fetch('api-token', { signal: signal() })
    assert.equal(value.reveal(), CANARY)
    assert.equal(value.version, v2)
    assert.ok(server.requestCount('challenge') >= 1, 'the first call went without a token and was challenged')
    assert.ok(server.requestCount('token') > tokensBefore, 'a token came from the identity endpoint')
  })

  test('each fetch is one request to the vault once a token is held (SDK retries and caching add nothing)', async () => {
    await kv.fetch('api-token', { signal: signal() })
    const before = server.requestCount('get')
    await kv.fetch('api-token', { signal: signal() })
    assert.equal(server.requestCount('get'), before + 1)
  })

  test('a credential version selects that version, and a full secret URL works as a ref', async () => {
    const old = server.setSecret('versioned', CANARY_OLD)
    server.setSecret('versioned', CANARY)
    assert.equal((await kv.fetch('versioned', { signal: signal(), version: old })).reveal(), CANARY_OLD)
    assert.equal((await kv.fetch(`${server.vaultUrl}/secrets/versioned/${old}`, { signal: signal() })).reveal(), CANARY_OLD)
    assert.equal((await kv.fetch(`${server.vaultUrl}/secrets/versioned`, { signal: signal() })).reveal(), CANARY)
    await rejects(kv.fetch(`${server.vaultUrl}/secrets/versioned/${old}`, { signal: signal(), version: 'f'.repeat(32) }), 'provider_config', /asks for version/)
  })

  test('secret names are case-insensitive, as in Key Vault', async () => {
    server.setSecret('Mixed-Case', CANARY)
    assert.equal((await kv.fetch('mixed-case', { signal: signal() })).reveal(), CANARY)
    assert.equal((await kv.fetch('MIXED-CASE', { signal: signal() })).reveal(), CANARY)
  })

  test('a rotated secret is returned at the next fetch', async () => {
    server.setSecret('rotating', CANARY_OLD)
    assert.equal((await kv.fetch('rotating', { signal: signal() })).reveal(), CANARY_OLD)
    const v = server.rotate('rotating', CANARY)
    const got = await kv.fetch('rotating', { signal: signal() })
    assert.equal(got.reveal(), CANARY)
    assert.equal(got.version, v)
  })

  test('a disabled latest version is access_denied saying disabled, with no fallback to the older version', async () => {
    server.setSecret('disabled', CANARY_OLD)
    server.setSecret('disabled', CANARY)
    server.disable('disabled')
    const err = await rejects(kv.fetch('disabled', { signal: signal() }), 'access_denied', /disabled/)
    assert.match(err.providerCode ?? '', /403.*SecretDisabled/)
    assert.equal(err.retryable, false)
  })

  test('an expired secret (exp in the past) is invalid_secret saying expired, though Key Vault returns it', async () => {
    server.setSecret('expired', CANARY, { exp: Math.floor(Date.now() / 1000) - 60 })
    await rejects(kv.fetch('expired', { signal: signal() }), 'invalid_secret', /expired/)
    server.setSecret('not-yet', CANARY, { nbf: Math.floor(Date.now() / 1000) + 3600 })
    await rejects(kv.fetch('not-yet', { signal: signal() }), 'invalid_secret', /not valid before/)
  })

  test('a missing secret or version is secret_not_found', async () => {
    const err = await rejects(kv.fetch('does-not-exist', { signal: signal() }), 'secret_not_found')
    assert.match(err.providerCode ?? '', /404 SecretNotFound/)
    server.setSecret('has-versions', CANARY)
    await rejects(kv.fetch('has-versions', { signal: signal(), version: '0'.repeat(32) }), 'secret_not_found')
  })

  test('an RBAC refusal is access_denied naming the role to grant', async () => {
    server.setSecret('forbidden', CANARY)
    server.deny('forbidden')
    const err = await rejects(kv.fetch('forbidden', { signal: signal() }), 'access_denied', /Key Vault Secrets User/)
    assert.match(err.providerCode ?? '', /ForbiddenByRbac/)
    server.deny('forbidden', false)
  })

  test('429 without Retry-After is throttled and retryable, and the SDK does not retry it', async () => {
    server.setSecret('busy', CANARY)
    server.throttleNext(1)
    const before = server.requestCount('get')
    const err = await rejects(kv.fetch('busy', { signal: signal() }), 'throttled')
    assert.equal(err.retryable, true)
    assert.equal(err.retryAfterMs, undefined)
    assert.equal(server.requestCount('get'), before + 1)
    assert.equal((await kv.fetch('busy', { signal: signal() })).reveal(), CANARY)
  })

  test('5xx is provider_unavailable and retryable, with one request per fetch', async () => {
    for (const status of [500, 503]) {
      server.failNext(1, status)
      const before = server.requestCount('get')
      const err = await rejects(kv.fetch('busy', { signal: signal() }), 'provider_unavailable')
      assert.equal(err.retryable, true)
      assert.equal(server.requestCount('get'), before + 1)
    }
  })

  test('a slow vault is cut off by the signal as provider_timeout', async () => {
    server.setLatency(3_000)
    try {
      const started = performance.now()
      await rejects(kv.fetch('busy', { signal: AbortSignal.timeout(200) }), 'provider_timeout')
      assert.ok(performance.now() - started < 2_000)
    } finally {
      server.setLatency(0)
    }
  })

  test('a token the vault no longer accepts is provider_auth_failed', async () => {
    const fresh = await create()
    server.setSecret('revoked', CANARY)
    assert.equal((await fresh.fetch('revoked', { signal: signal() })).reveal(), CANARY)
    server.revokeTokens()
    await rejects(fresh.fetch('revoked', { signal: signal() }), 'provider_auth_failed', /rejected the access token/)
  })

  test('a failing identity endpoint is provider_auth_failed, retryable for 5xx', async () => {
    server.setSecret('tokenless', CANARY)
    const fresh = await create()
    server.failTokensNext(1, 500)
    const err = await rejects(fresh.fetch('tokenless', { signal: signal() }), 'provider_auth_failed', /HTTP 500/)
    assert.equal(err.retryable, true)
    assert.equal((await fresh.fetch('tokenless', { signal: signal() })).reveal(), CANARY)
  })

  test('a vault that refuses connections is provider_unavailable', async () => {
    const closed = await startAzureServer({ tls: await ca.issue(['127.0.0.1']) })
    const url = closed.vaultUrl
    await closed.close()
    const p = await azureProvider.create(azureProvider.optionsSchema.parse({ type: 'azure', vaultUrl: url, disableChallengeResourceVerification: true }), { name: 'kv', logger, env: {}, ca: ca.caPem })
    await rejects(p.fetch('anything', { signal: signal() }), 'provider_unavailable')
  })

  test('a vault certificate from an untrusted CA is refused (TLS verification stays on)', async () => {
    const p = await create({}, null)
    await rejects(p.fetch('api-token', { signal: signal() }), 'provider_unavailable')
  })

  test('caFile adds a CA for the vault', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'lk-azure-'))
    writeFileSync(path.join(dir, 'ca.pem'), ca.caPem)
    const p = await create({ caFile: path.join(dir, 'ca.pem') }, null)
    assert.equal((await p.fetch('api-token', { signal: signal() })).reveal(), CANARY)
    await assert.rejects(create({ caFile: path.join(dir, 'missing.pem') }, null), (e: unknown) => e instanceof ProviderError && e.code === 'provider_config')
  })

  test('refs that are not secret names or secret URLs are provider_config', async () => {
    for (const ref of ['a/b', '../x', 'name?x=1', 'under_score', 'https://vault.example.net/keys/k', `${server.vaultUrl}/secrets/a/b/c`, 'http://vault.example.net/secrets/x']) {
      await rejects(kv.fetch(ref, { signal: signal() }), 'provider_config')
    }
  })

  test('a secret name ref without a vault is provider_config; AZURE_KEYVAULT_URL stands in for vaultUrl', async () => {
    const none = await azureProvider.create(azureProvider.optionsSchema.parse({ type: 'azure', disableChallengeResourceVerification: true }), { name: 'kv', logger, env: {}, ca: ca.caPem })
    await rejects(none.fetch('api-token', { signal: signal() }), 'provider_config', /no vault/)
    const fromEnv = await azureProvider.create(azureProvider.optionsSchema.parse({ type: 'azure', disableChallengeResourceVerification: true }), {
      name: 'kv',
      logger,
      env: { AZURE_KEYVAULT_URL: server.vaultUrl },
      ca: ca.caPem,
    })
    assert.equal((await fromEnv.fetch('api-token', { signal: signal() })).reveal(), CANARY)
  })

  test('check reports the identity from the token claims, never the token', async () => {
    const r = await kv.check!(signal())
    assert.equal(r.reachable, true)
    assert.equal(r.authenticated, true)
    assert.match(r.identity ?? '', new RegExp(`oid=${server.principal.oid}`))
    assert.match(r.identity ?? '', new RegExp(`appid=${server.principal.appid}`))
    assert.doesNotMatch(JSON.stringify(r), /eyJ/)
  })

  test('tokenIdentity reads claims of a JWT and nothing from other tokens', () => {
    const jwt = ['e30', Buffer.from(JSON.stringify({ oid: 'abc-1', appid: 'def-2', secret: 'x' })).toString('base64url'), 'sig'].join('.')
    assert.equal(tokenIdentity(jwt), 'oid=abc-1 appid=def-2')
    assert.equal(tokenIdentity('opaque-token'), undefined)
  })
})

describe('azure provider over plain http', () => {
  test('allowInsecureConnection works for a loopback vault', async () => {
    server.setSecret('plain', CANARY)
    const p = await azureProvider.create(
      azureProvider.optionsSchema.parse({ type: 'azure', vaultUrl: server.plainVaultUrl, allowInsecureConnection: true, disableChallengeResourceVerification: true }),
      { name: 'kv', logger, env: {} },
    )
    assert.equal((await p.fetch('plain', { signal: signal() })).reveal(), CANARY)
  })
})

describe('azure provider options', () => {
  const parse = (o: Record<string, unknown>) => azureProvider.optionsSchema.safeParse({ type: 'azure', ...o })
  test('allowInsecureConnection is refused for a non-loopback vault', () => {
    const r = parse({ vaultUrl: 'http://vault.example.net', allowInsecureConnection: true })
    assert.equal(r.success, false)
    assert.match(JSON.stringify(r.error?.issues), /loopback/)
  })
  test('plain http needs allowInsecureConnection', () => {
    assert.equal(parse({ vaultUrl: 'http://127.0.0.1:8443' }).success, false)
    assert.equal(parse({ vaultUrl: 'http://127.0.0.1:8443', allowInsecureConnection: true }).success, true)
  })
  test('unknown keys are errors', () => {
    assert.equal(parse({ vaultUrl: 'https://v.vault.azure.net', retries: 3 }).success, false)
  })
})

describe('azure token refresh failures', () => {
  test('a background token refresh that fails never becomes an unhandled rejection', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown) => unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    try {
      // Tokens that live 4 s are inside the SDK's 2-minute refresh window at once, so the
      // next fetch starts a background refresh; the identity endpoint then fails until expiry.
      server.setTokenTtl(4)
      server.setSecret('short-lived', CANARY)
      const p = await create()
      assert.equal((await p.fetch('short-lived', { signal: signal() })).reveal(), CANARY)
      server.failTokensNext(1_000, 500)
      assert.equal((await p.fetch('short-lived', { signal: signal() })).reveal(), CANARY)
      // Past expiry and past the SDK refresh loop (3 s steps), with no fetch waiting on it.
      await sleep(7_500)
      await rejects(p.fetch('short-lived', { signal: signal() }), 'provider_auth_failed')
      await sleep(200)
      assert.equal(unhandled.length, 0, `unhandled rejections: ${unhandled.map((u) => (u as Error)?.name).join(', ')}`)
    } finally {
      process.off('unhandledRejection', onUnhandled)
      server.failTokensNext(0, 500)
      server.setTokenTtl(60)
    }
  })
})

describe('azure errors never carry secret values', () => {
  test('no thrown error holds a canary in its message, String, JSON or inspect output', () => {
    assert.ok(thrown.length > 10, `only ${thrown.length} errors were captured`)
    const outputs = thrown.flatMap((e) => [String(e), (e as Error).message, JSON.stringify(e), inspect(e, { depth: 8, showHidden: true }), (e as Error).stack ?? ''])
    assertNoCanary(outputs, [CANARY, CANARY_OLD])
  })
})
