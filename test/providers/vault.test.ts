import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { inspect, promisify } from 'node:util'
import { pino } from 'pino'
import { ProviderError } from '../../src/errors.ts'
import type { ProviderContext, SecretProvider } from '../../src/providers/provider.ts'
import { vaultProvider } from '../../src/providers/vault.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { INVALID_TOKEN_ERRORS, startVaultServer, type VaultServer, type VaultServerOptions } from '../servers/vault-server.ts'

// axios (under node-vault) honours proxy variables.
process.env.NO_PROXY = '127.0.0.1,localhost'

const CANARY_VALUE = 'canary-vault-value-4b1e9d'
const CANARY_V1 = 'canary-vault-v1-77aa10'
const CANARY_NS = 'canary-vault-ns-c0ffee'
const CANARY_SECRET_ID = 'canary-secret-id-5d6e7f80'
const CANARY_JWT = 'eyJhbGciOiJSUzI1NiJ9.canary-jwt-payload-90ab.sig'
const CANARIES = [CANARY_VALUE, CANARY_V1, CANARY_NS, CANARY_SECRET_ID, CANARY_JWT]

const ROLE_ID = 'role-id-1234'
let dir: string
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
const opened: SecretProvider[] = []
const servers: VaultServer[] = []

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-vault-'))
  await writeFile(path.join(dir, 'secret-id'), CANARY_SECRET_ID + '\n')
  await writeFile(path.join(dir, 'jwt'), CANARY_JWT)
})

after(async () => {
  await Promise.all(opened.map((p) => p.close?.()))
  await Promise.all(servers.map((s) => s.close()))
  await rm(dir, { recursive: true, force: true })
  // Every token and secret any test planted stays out of the log.
  const tokens = servers.flatMap((s) => [s.rootToken, ...s.log.map((l) => l.token ?? '')]).filter((t) => t !== '')
  for (const line of lines) for (const c of [...CANARIES, ...tokens]) assert.ok(!line.includes(c), `log line leaks a canary: ${line}`)
})

async function server(opts: VaultServerOptions = {}): Promise<VaultServer> {
  const s = await startVaultServer({
    approle: { roleId: ROLE_ID, secretId: CANARY_SECRET_ID },
    kubernetes: { role: 'pipeline', jwt: CANARY_JWT },
    ...opts,
  })
  servers.push(s)
  s.setSecret('secret/app', { token: 'old-' + CANARY_VALUE })
  s.setSecret('secret/app', { token: CANARY_VALUE, user: 'svc' })
  s.setSecret('kv/legacy', { password: CANARY_V1 })
  return s
}

async function provider(raw: Record<string, unknown>, env: Record<string, string | undefined> = {}, ca?: string): Promise<SecretProvider> {
  const options = vaultProvider.optionsSchema.parse({ type: 'vault', ...raw })
  const ctx: ProviderContext = { name: 'v', logger, env, ca }
  const p = await vaultProvider.create(options, ctx)
  opened.push(p)
  return p
}

const signal = () => AbortSignal.timeout(5_000)

async function fetchText(p: SecretProvider, ref: string, version?: string) {
  const v = await p.fetch(ref, { signal: signal(), version })
  return { json: JSON.parse(v.reveal()) as Record<string, unknown>, version: v.version }
}

/** Assert `fn` rejects with a ProviderError of `code` that leaks no canary anywhere. */
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
  for (const c of [...CANARIES, ...secrets]) for (const v of views) assert.ok(!v.includes(c), `error leaks ${c}: ${v}`)
  extra(caught)
  return caught
}

describe('reading KV secrets', () => {
  let s: VaultServer
  let p: SecretProvider
  before(async () => {
    s = await server()
    p = await provider({ address: s.url, auth: { method: 'token', token: s.rootToken } })
  })

  test('a KV v2 ref returns the latest version as JSON text with its version number', async () => {
    assert.deepEqual(await fetchText(p, 'secret/data/app'), { json: { token: CANARY_VALUE, user: 'svc' }, version: '2' })
  })

  test('a version pins an older KV v2 version through ?version=N', async () => {
    assert.deepEqual(await fetchText(p, 'secret/data/app', '1'), { json: { token: 'old-' + CANARY_VALUE }, version: '1' })
    assert.ok(s.log.some((l) => l.path === '/v1/secret/data/app'))
  })

  test('a KV v1 mount is read at its plain path and has no version', async () => {
    assert.deepEqual(await fetchText(p, 'kv/legacy'), { json: { password: CANARY_V1 }, version: undefined })
  })

  test('a version on a KV v1 secret is a configuration error, not a silent latest read', async () => {
    await rejectsWith(() => p.fetch('kv/legacy', { signal: signal(), version: '3' }), 'provider_config')
  })

  test('a leading /v1/ in the ref is accepted and path tricks are refused', async () => {
    assert.equal((await fetchText(p, '/v1/secret/data/app')).version, '2')
    await rejectsWith(() => p.fetch('secret/data/../../sys/raw', { signal: signal() }), 'provider_config')
    await rejectsWith(() => p.fetch('secret/data/app?x=1', { signal: signal() }), 'secret_not_found')
  })

  test('a missing secret is secret_not_found, and a v2 ref without /data/ says how to write it', async () => {
    await rejectsWith(() => p.fetch('secret/data/nope', { signal: signal() }), 'secret_not_found', (e) => assert.equal(e.providerCode, '404'))
    await rejectsWith(() => p.fetch('secret/app', { signal: signal() }), 'secret_not_found', (e) => assert.match(e.message, /secret\/data\/app/))
    await rejectsWith(() => p.fetch('secret/data/app', { signal: signal(), version: '9' }), 'secret_not_found')
  })

  test('a soft-deleted or destroyed version is secret_not_found and says which', async () => {
    s.setSecret('secret/gone', { v: CANARY_VALUE })
    s.setSecret('secret/gone', { v: CANARY_VALUE + '-2' })
    s.deleteVersion('secret/gone')
    s.destroyVersion('secret/gone', 1)
    await rejectsWith(() => p.fetch('secret/data/gone', { signal: signal() }), 'secret_not_found', (e) => {
      assert.match(e.message, /version 2 of secret secret\/data\/gone is deleted/)
      assert.equal(e.providerCode, '404 deleted')
    })
    await rejectsWith(() => p.fetch('secret/data/gone', { signal: signal(), version: '1' }), 'secret_not_found', (e) => assert.match(e.message, /destroyed/))
  })

  test('kv: 2 refuses an answer that is not KV v2 shaped', async () => {
    const strict = await provider({ address: s.url, kv: 2, auth: { method: 'token', token: s.rootToken } })
    await rejectsWith(() => strict.fetch('kv/legacy', { signal: signal() }), 'invalid_secret')
  })

  test('a namespace scopes the secrets: the same path reads a different secret per namespace', async () => {
    s.setSecret('secret/app', { token: CANARY_NS }, { namespace: 'team-a' })
    const inNs = await provider({ address: s.url, namespace: 'team-a', auth: { method: 'token', token: s.rootToken } })
    assert.deepEqual((await fetchText(inNs, 'secret/data/app')).json, { token: CANARY_NS })
    assert.equal(s.log.at(-1)?.namespace, 'team-a')
    const fromEnv = await provider({ address: s.url, auth: { method: 'token', token: s.rootToken } }, { VAULT_NAMESPACE: 'team-b' })
    await rejectsWith(() => fromEnv.fetch('secret/data/app', { signal: signal() }), 'secret_not_found')
  })

  test('check reports the token identity by display name and policies, never the token', async () => {
    const c = await p.check!(signal())
    assert.equal(c.reachable, true)
    assert.equal(c.authenticated, true)
    assert.match(c.identity ?? '', /root .*\(policies: root\)/)
    assert.ok(!JSON.stringify(c).includes(s.rootToken))
  })
})

describe('auth methods', () => {
  let s: VaultServer
  before(async () => {
    s = await server()
  })

  test('the address and token come from VAULT_ADDR and VAULT_TOKEN when the config omits them', async () => {
    const p = await provider({}, { VAULT_ADDR: s.url, VAULT_TOKEN: s.rootToken })
    assert.equal((await fetchText(p, 'secret/data/app')).json.token, CANARY_VALUE)
  })

  test('a token file is read (trimmed) and used', async () => {
    const token = s.createToken({ ttl: 600, allow: ['secret/data/*'] })
    await writeFile(path.join(dir, 'token'), token + '\n')
    const p = await provider({ address: s.url, auth: { method: 'token', tokenFile: path.join(dir, 'token') } })
    assert.equal((await fetchText(p, 'secret/data/app')).json.token, CANARY_VALUE)
  })

  test('no token anywhere is a provider_config error at first use', async () => {
    const p = await provider({ address: s.url })
    await rejectsWith(() => p.fetch('secret/data/app', { signal: signal() }), 'provider_config')
  })

  test('AppRole logs in with the secret_id from a file and reads with the issued token', async () => {
    const before = s.requestCount('/auth/approle/login')
    const p = await provider({ address: s.url, auth: { method: 'approle', roleId: ROLE_ID, secretIdFile: path.join(dir, 'secret-id') } })
    assert.equal((await fetchText(p, 'secret/data/app')).json.token, CANARY_VALUE)
    assert.equal((await fetchText(p, 'kv/legacy')).json.password, CANARY_V1)
    assert.equal(s.requestCount('/auth/approle/login') - before, 1, 'one login for many reads')
    assert.equal(s.log.at(-1)?.token, s.lastIssuedToken)
  })

  test('a wrong AppRole secret_id is provider_auth_failed and the secret_id stays out of the error', async () => {
    const wrong = 'wrong-secret-id-canary-1f2e'
    const p = await provider({ address: s.url, auth: { method: 'approle', roleId: ROLE_ID, secretId: wrong } })
    await rejectsWith(() => p.fetch('secret/data/app', { signal: signal() }), 'provider_auth_failed', (e) => assert.equal(e.providerCode, '400 invalid role or secret ID'), [wrong])
  })

  test('a custom AppRole mount is used for the login', async () => {
    const s2 = await server({ approle: { roleId: ROLE_ID, secretId: CANARY_SECRET_ID, mount: 'ci-approle' } })
    const p = await provider({ address: s2.url, auth: { method: 'approle', roleId: ROLE_ID, secretId: CANARY_SECRET_ID, mount: 'ci-approle' } })
    assert.equal((await fetchText(p, 'secret/data/app')).json.token, CANARY_VALUE)
    assert.equal(s2.requestCount('/v1/auth/ci-approle/login'), 1)
  })

  test('Kubernetes auth logs in with the service-account JWT file and role', async () => {
    const p = await provider({ address: s.url, auth: { method: 'kubernetes', role: 'pipeline', jwtFile: path.join(dir, 'jwt') } })
    assert.equal((await fetchText(p, 'secret/data/app')).json.token, CANARY_VALUE)
    assert.equal(s.requestCount('/v1/auth/kubernetes/login'), 1)
  })

  test('Kubernetes auth with a wrong role or a rejected JWT is provider_auth_failed', async () => {
    const badRole = await provider({ address: s.url, auth: { method: 'kubernetes', role: 'other', jwtFile: path.join(dir, 'jwt') } })
    await rejectsWith(() => badRole.fetch('secret/data/app', { signal: signal() }), 'provider_auth_failed', (e) => assert.equal(e.providerCode, '400 invalid role name'))
    await writeFile(path.join(dir, 'bad-jwt'), 'eyJ.bad-jwt-canary.x')
    const badJwt = await provider({ address: s.url, auth: { method: 'kubernetes', role: 'pipeline', jwtFile: path.join(dir, 'bad-jwt') } })
    await rejectsWith(() => badJwt.fetch('secret/data/app', { signal: signal() }), 'provider_auth_failed', (e) => assert.equal(e.providerCode, '403 permission denied'), ['eyJ.bad-jwt-canary.x'])
  })

  test('a missing JWT file is provider_auth_failed naming the file', async () => {
    const p = await provider({ address: s.url, auth: { method: 'kubernetes', role: 'pipeline', jwtFile: path.join(dir, 'absent') } })
    await rejectsWith(() => p.fetch('secret/data/app', { signal: signal() }), 'provider_auth_failed', (e) => assert.match(e.message, /absent \(ENOENT\)/))
  })

  test('the options schema rejects unknown keys and both a secret and its file', () => {
    assert.equal(vaultProvider.optionsSchema.safeParse({ type: 'vault', adress: 'x' }).success, false)
    assert.equal(vaultProvider.optionsSchema.safeParse({ type: 'vault', auth: { method: 'approle', roleId: 'r', secretId: 'a', secretIdFile: 'b' } }).success, false)
    assert.equal(vaultProvider.optionsSchema.safeParse({ type: 'vault', auth: { method: 'kubernetes' } }).success, false)
    const k = vaultProvider.optionsSchema.parse({ type: 'vault', auth: { method: 'kubernetes', role: 'r' } })
    assert.deepEqual(k.auth, { method: 'kubernetes', role: 'r', jwtFile: '/var/run/secrets/kubernetes.io/serviceaccount/token', mount: 'kubernetes' })
  })
})

describe('token lifecycle', () => {
  test('a renewable token is renewed with renew-self before it expires, without a new login', async () => {
    const s = await server({ approle: { roleId: ROLE_ID, secretId: CANARY_SECRET_ID, token: { ttl: 3, renewable: true } } })
    const p = await provider({ address: s.url, auth: { method: 'approle', roleId: ROLE_ID, secretId: CANARY_SECRET_ID } })
    await fetchText(p, 'secret/data/app')
    const issued = s.lastIssuedToken
    for (let i = 0; i < 40 && s.requestCount('/v1/auth/token/renew-self') === 0; i++) await sleep(100)
    assert.equal(s.requestCount('/v1/auth/token/renew-self'), 1, 'renewed at about 2/3 of the 3 s lease')
    await sleep(1_500) // past the original expiry
    await fetchText(p, 'secret/data/app')
    assert.equal(s.requestCount('/auth/approle/login'), 1)
    assert.equal(s.log.at(-1)?.token, issued)
  })

  test('a token that is not renewable is replaced by a new login before it expires', async () => {
    const s = await server({ kubernetes: { role: 'pipeline', jwt: CANARY_JWT, token: { ttl: 2, renewable: false } } })
    const p = await provider({ address: s.url, auth: { method: 'kubernetes', role: 'pipeline', jwtFile: path.join(dir, 'jwt') } })
    await fetchText(p, 'secret/data/app')
    for (let i = 0; i < 30 && s.requestCount('/login') < 2; i++) await sleep(100)
    assert.equal(s.requestCount('/login'), 2)
    assert.equal(s.requestCount('renew-self'), 0)
  })

  test('a failed renewal (token revoked) falls back to a new login', async () => {
    const s = await server({ approle: { roleId: ROLE_ID, secretId: CANARY_SECRET_ID, token: { ttl: 2, renewable: true } } })
    const p = await provider({ address: s.url, auth: { method: 'approle', roleId: ROLE_ID, secretIdFile: path.join(dir, 'secret-id') } })
    await fetchText(p, 'secret/data/app')
    s.revokeToken()
    for (let i = 0; i < 30 && s.requestCount('/login') < 2; i++) await sleep(100)
    assert.equal(s.requestCount('/login'), 2)
    assert.equal(s.requestCount('renew-self'), 1)
    assert.ok(lines.some((l) => l.includes('vault_token_renew_failed')))
  })

  test('a revoked token makes the next read log in once and retry once', async () => {
    const s = await server()
    const p = await provider({ address: s.url, auth: { method: 'approle', roleId: ROLE_ID, secretIdFile: path.join(dir, 'secret-id') } })
    await fetchText(p, 'secret/data/app')
    s.revokeToken()
    s.rotate('secret/app', { token: CANARY_VALUE + '-rotated' })
    assert.deepEqual(await fetchText(p, 'secret/data/app'), { json: { token: CANARY_VALUE + '-rotated' }, version: '3' })
    assert.equal(s.requestCount('/login'), 2)
    assert.equal(s.requestCount('/v1/secret/data/app'), 3)
  })

  test('an invalid-token 403 that persists after the re-login is provider_auth_failed, with no loop', async () => {
    const s = await server()
    const p = await provider({ address: s.url, auth: { method: 'approle', roleId: ROLE_ID, secretId: CANARY_SECRET_ID } })
    s.failNext(5, 403, '/v1/secret/', INVALID_TOKEN_ERRORS)
    await rejectsWith(() => p.fetch('secret/data/app', { signal: signal() }), 'provider_auth_failed', (e) => assert.equal(e.providerCode, '403 invalid token'))
    assert.equal(s.requestCount('/login'), 2)
    assert.equal(s.requestCount('/v1/secret/'), 2)
  })

  test('a revoked static token is provider_auth_failed (re-login cannot help)', async () => {
    const s = await server()
    const token = s.createToken({ ttl: 600 })
    const p = await provider({ address: s.url, auth: { method: 'token', token } })
    await fetchText(p, 'secret/data/app')
    s.revokeToken(token)
    await rejectsWith(() => p.fetch('secret/data/app', { signal: signal() }), 'provider_auth_failed', undefined, [token])
  })

  test('close() stops renewal timers', async () => {
    const s = await server({ approle: { roleId: ROLE_ID, secretId: CANARY_SECRET_ID, token: { ttl: 2, renewable: true } } })
    const p = await provider({ address: s.url, auth: { method: 'approle', roleId: ROLE_ID, secretId: CANARY_SECRET_ID } })
    await fetchText(p, 'secret/data/app')
    await p.close!()
    await sleep(1_800)
    assert.equal(s.requestCount('renew-self'), 0)
  })
})

describe('error mapping', () => {
  let s: VaultServer
  let p: SecretProvider
  before(async () => {
    s = await server()
    p = await provider({ address: s.url, auth: { method: 'token', token: s.rootToken } })
    await fetchText(p, 'secret/data/app') // logged in: the faults below hit reads, not the token lookup
  })

  test('a policy denial (valid token) is access_denied, not a re-login', async () => {
    const token = s.createToken({ ttl: 600, allow: ['secret/data/other'] })
    const limited = await provider({ address: s.url, auth: { method: 'token', token } })
    const logins = s.requestCount('lookup-self')
    await rejectsWith(() => limited.fetch('secret/data/app', { signal: signal() }), 'access_denied', (e) => {
      assert.equal(e.providerCode, '403 permission denied')
      assert.equal(e.retryable, false)
    })
    assert.equal(s.requestCount('lookup-self') - logins, 1)
  })

  test('429 is throttled and retryable', async () => {
    s.throttleNext(1, '/v1/secret/')
    await rejectsWith(() => p.fetch('secret/data/app', { signal: signal() }), 'throttled', (e) => {
      assert.equal(e.retryable, true)
      assert.equal(e.providerCode, '429 rate limited')
      assert.equal(e.retryAfterMs, 1000, "the server's Retry-After: 1, which node-vault does not pass on")
    })
  })

  test('503 sealed and 500 are provider_unavailable and retryable', async () => {
    s.failNext(1, 503, '/v1/secret/')
    await rejectsWith(() => p.fetch('secret/data/app', { signal: signal() }), 'provider_unavailable', (e) => {
      assert.equal(e.providerCode, '503 sealed')
      assert.equal(e.retryable, true)
      assert.match(e.message, /sealed/)
    })
    s.failNext(1, 500, '/v1/secret/')
    await rejectsWith(() => p.fetch('secret/data/app', { signal: signal() }), 'provider_unavailable', (e) => assert.equal(e.providerCode, '500'))
  })

  test('a login that hits a sealed Vault is provider_unavailable, not an auth failure', async () => {
    const ap = await provider({ address: s.url, auth: { method: 'approle', roleId: ROLE_ID, secretId: CANARY_SECRET_ID } })
    s.failNext(1, 503, '/login')
    await rejectsWith(() => ap.fetch('secret/data/app', { signal: signal() }), 'provider_unavailable')
    assert.equal((await fetchText(ap, 'secret/data/app')).json.token, CANARY_VALUE)
  })

  test('a refused connection is provider_unavailable with the socket code', async () => {
    const gone = await startVaultServer()
    const url = gone.url
    await gone.close()
    const dead = await provider({ address: url, auth: { method: 'token', token: 'hvs.canary-dead-token' } })
    await rejectsWith(() => dead.fetch('secret/data/app', { signal: signal() }), 'provider_unavailable', (e) => assert.equal(e.providerCode, 'ECONNREFUSED'), ['hvs.canary-dead-token'])
  })

  test('a slow Vault is provider_timeout as soon as the signal fires', async () => {
    s.setLatency(1_000, '/v1/secret/')
    try {
      const started = performance.now()
      await rejectsWith(() => p.fetch('secret/data/app', { signal: AbortSignal.timeout(100) }), 'provider_timeout')
      assert.ok(performance.now() - started < 600)
    } finally {
      s.setLatency(0)
    }
  })

  test('an already aborted signal fails fast without a request', async () => {
    const count = s.requestCount()
    const ac = new AbortController()
    ac.abort()
    await rejectsWith(() => p.fetch('secret/data/app', { signal: ac.signal }), 'provider_timeout')
    assert.equal(s.requestCount(), count)
  })

  test('check reports an unreachable Vault as not reachable', async () => {
    s.failNext(1, 503, 'lookup-self')
    const c = await p.check!(signal())
    assert.deepEqual([c.reachable, c.authenticated], [false, false])
  })
})

describe('TLS', () => {
  let s: VaultServer
  let caPem: string
  before(async () => {
    const ca = await createTestCa()
    caPem = ca.caPem
    await writeFile(path.join(dir, 'ca.pem'), caPem)
    s = await server({ tls: await ca.issue(['localhost', '127.0.0.1']) })
  })

  test('an HTTPS Vault is trusted through caFile', async () => {
    const p = await provider({ address: s.url, caFile: path.join(dir, 'ca.pem'), auth: { method: 'token', token: s.rootToken } })
    assert.equal((await fetchText(p, 'secret/data/app')).json.token, CANARY_VALUE)
  })

  test('the upstream CA from the daemon context is used when caFile is unset', async () => {
    const p = await provider({ address: s.url, auth: { method: 'token', token: s.rootToken } }, {}, caPem)
    assert.equal((await fetchText(p, 'secret/data/app')).json.token, CANARY_VALUE)
  })

  test('an untrusted certificate fails verification even with VAULT_SKIP_VERIFY set in the process', async () => {
    process.env.VAULT_SKIP_VERIFY = '1'
    try {
      const p = await provider({ address: s.url, auth: { method: 'token', token: s.rootToken } })
      await rejectsWith(() => p.fetch('secret/data/app', { signal: signal() }), 'provider_unavailable', (e) => {
        assert.equal(e.retryable, false)
        assert.match(e.message, /TLS verification/)
      })
    } finally {
      delete process.env.VAULT_SKIP_VERIFY
    }
  })

  test('a caFile that is not PEM is a provider_config error at create', async () => {
    await writeFile(path.join(dir, 'not-pem'), 'hello')
    await assert.rejects(provider({ address: s.url, caFile: path.join(dir, 'not-pem') }), (e: ProviderError) => e.code === 'provider_config')
  })
})

test('importing the provider module does not load node-vault; creating a provider does', async () => {
  const script = `
    import { createRequire } from 'node:module'
    const { vaultProvider } = await import(${JSON.stringify(path.resolve('src/providers/vault.ts'))})
    const require = createRequire(import.meta.url)
    const loaded = () => Object.keys(require.cache).some((k) => k.includes('node-vault'))
    const before = loaded()
    await vaultProvider.create(vaultProvider.optionsSchema.parse({ type: 'vault', address: 'http://127.0.0.1:1' }), { name: 'v', env: {}, logger: { warn() {}, debug() {} } })
    console.log(JSON.stringify([before, loaded()]))`
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: process.cwd() })
  assert.deepEqual(JSON.parse(stdout), [false, true])
})
