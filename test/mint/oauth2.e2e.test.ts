import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { Agent, ProxyAgent, request } from 'undici'
import { createLatchkeyInterceptor } from '../../src/shim/interceptor.ts'
import type { Daemon } from '../../src/daemon.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { startOAuthServer, type OAuthServer } from '../servers/oauth2-server.ts'

const SECRET_BASIC = 'canary-client-secret-basic-4e1f9a'
const SECRET_POST = 'canary-client-secret-post-7b20c3'
const SECRET_ROTATED = 'canary-client-secret-rotated-0d5e66'
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const KEY_PEM = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
/** The other key types private_key_jwt takes, each with the JWS algorithm it implies. */
const OTHER_KEYS = [
  { name: 'rsa', alg: 'RS256', pair: generateKeyPairSync('rsa', { modulusLength: 2048 }) },
  { name: 'p384', alg: 'ES384', pair: generateKeyPairSync('ec', { namedCurve: 'P-384' }) },
  { name: 'ed', alg: 'Ed25519', pair: generateKeyPairSync('ed25519') },
].map((k) => ({ ...k, pem: k.pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }))

let dir: string
let oauth: OAuthServer
let api: Upstream
let apiJwt: Upstream
let apiNarrow: Upstream
let daemon: Daemon
const logs = captureLogs()
const client = new Agent({ connections: 600 })

/** An upstream that accepts only tokens the authorization server issued and still considers valid. */
function acceptOnlyCurrentTokens(u: Upstream, refused: string[]) {
  u.handle((req, res) => {
    const token = /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ''))?.[1]
    if (token === undefined || !oauth.isValid(token)) {
      refused.push(token ?? '')
      res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' }).end()
      return
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok')
  })
}
const refused: string[] = []

async function get(route: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; code: string | undefined }> {
  const r = await request(`${daemon.proxyUrl}/${route}/data`, { dispatcher: client, headers })
  const body = await r.body.text()
  return { status: r.statusCode, body, code: r.headers['x-latchkey-error'] as string | undefined }
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-oauth2-'))
  await writeFile(path.join(dir, 'post-secret'), SECRET_POST)
  await writeFile(path.join(dir, 'key.json'), JSON.stringify({ pem: KEY_PEM }))
  oauth = await startOAuthServer({
    'basic-client': { method: 'client_secret_basic', secret: SECRET_BASIC, scopes: ['read', 'write'] },
    'post-client': { method: 'client_secret_post', secret: SECRET_POST },
    'jwt-client': { method: 'private_key_jwt', publicKey },
    'narrow-client': { method: 'client_secret_basic', secret: SECRET_BASIC, scopes: ['read'] },
    ...Object.fromEntries(OTHER_KEYS.map((k) => [`${k.name}-client`, { method: 'private_key_jwt' as const, publicKey: k.pair.publicKey }])),
  })
  api = await startUpstream()
  apiJwt = await startUpstream()
  apiNarrow = await startUpstream()
  for (const u of [api, apiJwt, apiNarrow]) acceptOnlyCurrentTokens(u, refused)
  const inject = (extra: Record<string, unknown>) => ({ type: 'oauth2', tokenUrl: oauth.tokenUrl, insecure: true, ...extra })
  const port = api.port
  daemon = await startTestDaemon({
    baseDir: dir,
    env: { BASIC_SECRET: SECRET_BASIC },
    logStream: logs.stream,
    config: {
      cache: { bustCooldown: '50ms' },
      providers: { dev: { type: 'env' }, files: { type: 'file', dir: '.' } },
      // Each credential has its own binding: another port, or another name for the same upstream.
      credentials: {
        basic: { provider: 'dev', ref: 'BASIC_SECRET', hosts: [`127.0.0.1:${port}`], insecure: true, inject: inject({ clientId: 'basic-client', scope: ['read', 'write'], audience: 'https://api.example', resource: ['https://api.example/a', 'https://api.example/b'], params: { tenant: 't1' } }) },
        post: { provider: 'files', ref: 'post-secret', hosts: [`localhost:${port}`], insecure: true, prefetch: false, inject: inject({ clientId: 'post-client', auth: 'client_secret_post' }) },
        jwt: { provider: 'files', ref: 'key.json', field: 'pem', hosts: [`127.0.0.1:${apiJwt.port}`], insecure: true, inject: inject({ clientId: 'jwt-client', auth: 'private_key_jwt', keyId: 'k1' }) },
        narrow: { provider: 'dev', ref: 'BASIC_SECRET', hosts: [`127.0.0.1:${apiNarrow.port}`], insecure: true, prefetch: false, inject: inject({ clientId: 'narrow-client', scope: 'write' }) },
      },
      routes: {
        basic: { upstream: `http://127.0.0.1:${port}` },
        post: { upstream: `http://localhost:${port}` },
        jwt: { upstream: apiJwt.url },
        narrow: { upstream: apiNarrow.url },
      },
    },
  })
})

after(async () => {
  await daemon?.close(100)
  await client.close()
  await api?.close()
  await apiJwt?.close()
  await apiNarrow?.close()
  await oauth?.close()
  await rm(dir, { recursive: true, force: true })
  // Every secret this file handled, in every encoding, at trace level.
  assertNoCanary(logs.lines(), [SECRET_BASIC, SECRET_POST, SECRET_ROTATED, KEY_PEM, ...KEY_PEM.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----')), ...oauth.assertions, ...oauth.issued])
})

test('client_secret_basic: the token request carries the Basic client auth, scope, audience, resources and extra params, and the API gets the token as a Bearer', async () => {
  const r = await get('basic')
  assert.equal(r.status, 200, r.body)
  const req = oauth.requests.find((x) => x.clientId === 'basic-client' && x.status === 200)
  assert.ok(req)
  assert.equal(req.method, 'client_secret_basic')
  assert.deepEqual(req.params.grant_type, ['client_credentials'])
  assert.deepEqual(req.params.scope, ['read write'])
  assert.deepEqual(req.params.audience, ['https://api.example'])
  assert.deepEqual(req.params.resource, ['https://api.example/a', 'https://api.example/b'])
  assert.deepEqual(req.params.tenant, ['t1'])
  const sent = api.received.at(-1)?.headers.authorization
  assert.ok(sent !== undefined && oauth.issued.includes(sent.replace(/^Bearer /, '')))
})

test('client_secret_post: the secret goes in the form and the token is injected', async () => {
  const r = await get('post')
  assert.equal(r.status, 200, r.body)
  assert.ok(oauth.requests.some((x) => x.clientId === 'post-client' && x.method === 'client_secret_post' && x.status === 200))
})

test('private_key_jwt: a signed assertion (verified by the server with the public key) gets the token', async () => {
  const r = await get('jwt')
  assert.equal(r.status, 200, r.body)
  assert.ok(oauth.requests.some((x) => x.clientId === 'jwt-client' && x.method === 'private_key_jwt' && x.status === 200))
  const header = JSON.parse(Buffer.from(oauth.assertions.at(-1)?.split('.')[0] ?? '', 'base64url').toString()) as { alg: string; kid: string }
  assert.deepEqual([header.alg, header.kid], ['ES256', 'k1'])
})

test('private_key_jwt with RSA, P-384 and Ed25519 keys: each assertion carries the algorithm its key implies and is verified by the server; an RSA-PSS-typed key is refused by name', async () => {
  const upstreams = await Promise.all([...OTHER_KEYS, 'pss'].map(() => startUpstream()))
  for (const u of upstreams) acceptOnlyCurrentTokens(u, refused)
  for (const k of OTHER_KEYS) await writeFile(path.join(dir, `${k.name}.pem`), k.pem)
  const pss = generateKeyPairSync('rsa-pss', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  await writeFile(path.join(dir, 'pss.pem'), pss)
  const pssUp = upstreams.at(-1)!
  const d = await startTestDaemon({
    baseDir: dir,
    logStream: logs.stream,
    config: {
      providers: { files: { type: 'file', dir: '.' } },
      credentials: {
        ...Object.fromEntries(
          OTHER_KEYS.map((k, i) => [k.name, { provider: 'files', ref: `${k.name}.pem`, hosts: [`127.0.0.1:${upstreams[i]!.port}`], insecure: true, inject: { type: 'oauth2', tokenUrl: oauth.tokenUrl, insecure: true, clientId: `${k.name}-client`, auth: 'private_key_jwt' } }]),
        ),
        pss: { provider: 'files', ref: 'pss.pem', hosts: [`127.0.0.1:${pssUp.port}`], insecure: true, prefetch: false, inject: { type: 'oauth2', tokenUrl: oauth.tokenUrl, insecure: true, clientId: 'pss-client', auth: 'private_key_jwt' } },
      },
      routes: { ...Object.fromEntries(OTHER_KEYS.map((k, i) => [k.name, { upstream: upstreams[i]!.url }])), pss: { upstream: pssUp.url } },
    },
  })
  try {
    for (const k of OTHER_KEYS) {
      const r = await request(`${d.proxyUrl}/${k.name}/x`, { dispatcher: client })
      assert.equal(r.statusCode, 200, `${k.name}: ${await r.body.text()}`)
      if (r.statusCode === 200) await r.body.dump()
      const ok = oauth.requests.filter((x) => x.clientId === `${k.name}-client` && x.method === 'private_key_jwt' && x.status === 200)
      assert.equal(ok.length, 1, k.name)
    }
    const algs = oauth.assertions.map((a) => JSON.parse(Buffer.from(a.split('.')[0] ?? '', 'base64url').toString()) as { alg: string }).map((h) => h.alg)
    for (const k of OTHER_KEYS) assert.ok(algs.includes(k.alg), `${k.alg} among ${algs.join(', ')}`)
    const start = logs.lines().length
    const refusedPss = await request(`${d.proxyUrl}/pss/x`, { dispatcher: client })
    await refusedPss.body.dump()
    assert.equal(refusedPss.statusCode, 503)
    assert.ok(
      logs.records().slice(start).some((l) => l.code === 'invalid_secret' && /not a PEM private key of a type it takes \(RSA, EC P-256\/P-384\/P-521, Ed25519; not RSA-PSS-only keys\)/.test(JSON.stringify(l))),
      'the log says which key types are taken',
    )
  } finally {
    await d.close(100)
    await Promise.all(upstreams.map((u) => u.close()))
  }
  assertNoCanary(logs.lines(), OTHER_KEYS.map((k) => k.pem).concat(pss).flatMap((pem) => [pem, ...pem.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----'))]))
})

test('a token the API revoked is refetched once and the request replayed', async () => {
  assert.equal((await get('basic')).status, 200)
  const before = oauth.issued.length
  const current = api.received.at(-1)?.headers.authorization?.replace(/^Bearer /, '') ?? ''
  oauth.revoke(current)
  const r = await get('basic')
  assert.equal(r.status, 200, r.body)
  assert.equal(oauth.issued.length, before + 1)
  assert.equal(refused.at(-1), current)
})

test('invalid_scope is a 503 (logged as provider_config with the OAuth2 error), and repeated requests do not storm the token endpoint', async () => {
  const before = oauth.requests.filter((x) => x.clientId === 'narrow-client').length
  for (let i = 0; i < 5; i++) {
    const r = await get('narrow')
    assert.equal(r.status, 503)
    assert.equal(r.code, 'secret_unavailable')
  }
  assert.equal(oauth.requests.filter((x) => x.clientId === 'narrow-client').length - before, 1)
  assert.ok(logs.records().some((l) => l.event === 'provider_error' && l.code === 'provider_config' && l.providerCode === '400 invalid_scope' && l.credential === 'narrow'))
})

test('invalid_client (a client id the server does not know) is a 503 logged as provider_auth_failed, and repeated requests are held down instead of storming the token endpoint', async () => {
  const up = await startUpstream()
  const d = await startTestDaemon({
    baseDir: dir,
    env: { GHOST_SECRET: SECRET_BASIC },
    logStream: logs.stream,
    config: {
      cache: { bustCooldown: '10ms' },
      providers: { dev: { type: 'env' } },
      credentials: { ghost: { provider: 'dev', ref: 'GHOST_SECRET', hosts: [`127.0.0.1:${up.port}`], insecure: true, prefetch: false, inject: { type: 'oauth2', tokenUrl: oauth.tokenUrl, insecure: true, clientId: 'no-such-client' } } },
      routes: { ghost: { upstream: up.url } },
    },
  })
  try {
    const start = logs.lines().length
    for (let i = 0; i < 5; i++) {
      const r = await request(`${d.proxyUrl}/ghost/x`, { dispatcher: client })
      await r.body.dump()
      assert.equal(r.statusCode, 503)
      assert.equal(r.headers['x-latchkey-error'], 'secret_unavailable')
    }
    // One exchange, and at most one more after the client secret was read again (unchanged): then the hold-down.
    const asked = oauth.requests.filter((x) => x.clientId === 'no-such-client').length
    assert.ok(asked >= 1 && asked <= 2, `${asked} token requests for 5 client requests`)
    assert.ok(logs.records().slice(start).some((l) => l.credential === 'ghost' && l.code === 'provider_auth_failed' && l.providerCode === '401 invalid_client'), 'the log names the OAuth2 error, not only the HTTP status')
    assert.equal(up.received.length, 0, 'nothing was sent upstream without a token')
  } finally {
    await d.close(100)
    await up.close()
  }
})

test('a 429 with Retry-After and a 503 are retried, and the request still succeeds', async () => {
  daemon.cache.clear(daemon.config.credentials.post)
  oauth.failNext(1, 429, { retryAfter: '0' })
  oauth.failNext(1, 503)
  const before = oauth.requests.length
  const r = await get('post')
  assert.equal(r.status, 200, r.body)
  assert.deepEqual(oauth.requests.slice(before).map((x) => x.status), [429, 503, 200])
})

test('a rotated client secret: the token endpoint refuses the cached one, latchkey refetches the secret once and mints with the new one', async () => {
  await writeFile(path.join(dir, 'post-secret'), SECRET_ROTATED)
  oauth.rotateSecret('post-client', SECRET_ROTATED)
  daemon.cache.clear(daemon.config.credentials.post)
  const r = await get('post')
  assert.equal(r.status, 200, r.body)
  const statuses = oauth.requests.filter((x) => x.clientId === 'post-client').slice(-2).map((x) => x.status)
  assert.deepEqual(statuses, [401, 200])
})

test('500 concurrent requests with nothing cached share one token request', async () => {
  daemon.cache.clear(daemon.config.credentials.post)
  oauth.setLatency(100)
  const before = oauth.requests.length
  try {
    const all = await Promise.all(Array.from({ length: 500 }, () => get('post')))
    assert.deepEqual([...new Set(all.map((r) => r.status))], [200])
  } finally {
    oauth.setLatency(0)
  }
  assert.equal(oauth.requests.length - before, 1)
})

test('a short-lived token is refreshed ahead of expiry: no request fails and the API never sees an expired token', async () => {
  oauth.tokenTtl = 2
  daemon.cache.clear(daemon.config.credentials.jwt)
  const refusedBefore = refused.length
  const issuedBefore = oauth.issued.length
  try {
    // Until three more tokens were issued: each lives 2 s and is replaced after 1 s (expirySkew caps at half).
    while (oauth.issued.length < issuedBefore + 3) {
      const r = await get('jwt')
      assert.equal(r.status, 200, r.body)
    }
  } finally {
    oauth.tokenTtl = 3600
  }
  assert.equal(refused.length, refusedBefore)
})

test('an https token endpoint is verified against upstream.caFile', async () => {
  const ca = await createTestCa()
  await writeFile(path.join(dir, 'ca.pem'), ca.caPem)
  const tlsOAuth = await startOAuthServer({ c: { method: 'client_secret_basic', secret: SECRET_BASIC } }, { tls: await ca.issue(['127.0.0.1']) })
  const tlsLogs = captureLogs()
  const d = await startTestDaemon({
    baseDir: dir,
    env: { S: SECRET_BASIC },
    logStream: tlsLogs.stream,
    config: {
      upstream: { caFile: 'ca.pem' },
      providers: { dev: { type: 'env' } },
      credentials: { c: { provider: 'dev', ref: 'S', hosts: [`127.0.0.1:${api.port}`], insecure: true, inject: { type: 'oauth2', tokenUrl: tlsOAuth.tokenUrl, clientId: 'c' } } },
      routes: { r: { upstream: api.url } },
    },
  })
  try {
    assert.deepEqual(d.notReady(), [])
    const r = await request(`${d.proxyUrl}/r/x`, { dispatcher: client })
    await r.body.text()
    // The API trusts only the main server's tokens, so it refuses this one: proof the token came
    // from the TLS server (minted at start, and once more after the 401).
    assert.equal(r.statusCode, 401)
    assert.equal(tlsOAuth.issued.length, 2)
  } finally {
    await d.close(100)
    await tlsOAuth.close()
  }
  assertNoCanary(tlsLogs.lines(), [SECRET_BASIC, ...tlsOAuth.issued])
})

test('the forward proxy (HTTP_PROXY) injects the minted token too', async () => {
  const proxy = new ProxyAgent(daemon.proxyUrl)
  try {
    const r = await request(`${api.url}/via-proxy`, { dispatcher: proxy })
    await r.body.dump()
    assert.equal(r.statusCode, 200)
    assert.equal(api.received.at(-1)?.url, '/via-proxy')
  } finally {
    await proxy.close()
  }
})

test('the in-process shim mints and injects the same way', async () => {
  const shimLogs = captureLogs()
  const shim = createLatchkeyInterceptor(
    {
      log: { level: 'trace' },
      providers: { dev: { type: 'env' } },
      credentials: { api: { provider: 'dev', ref: 'S', hosts: [`127.0.0.1:${api.port}`], insecure: true, inject: { type: 'oauth2', tokenUrl: oauth.tokenUrl, insecure: true, clientId: 'post-client', auth: 'client_secret_post' } } },
    },
    { env: { S: SECRET_ROTATED }, logStream: shimLogs.stream },
  )
  const base = new Agent()
  try {
    await shim.ready
    const r = await request(`${api.url}/shim`, { dispatcher: base.compose(shim) })
    await r.body.dump()
    assert.equal(r.statusCode, 200)
    assert.ok(oauth.isValid(api.received.at(-1)?.headers.authorization?.replace(/^Bearer /, '') ?? ''))
  } finally {
    await shim.close()
    await shim.broker.minters.closeAll()
    await base.close()
  }
  assertNoCanary(shimLogs.lines(), [SECRET_ROTATED, ...oauth.issued])
})

test('an HTTPS_PROXY client through the intercepted tunnel gets the minted token on a TLS upstream', async () => {
  const tunnelLogs = captureLogs()
  const testCa = await createTestCa()
  const tlsApi = await startUpstream(await testCa.issue(['localhost']))
  acceptOnlyCurrentTokens(tlsApi, refused)
  const tunnelDir = await mkdtemp(path.join(tmpdir(), 'latchkey-oauth2-tunnel-'))
  await writeFile(path.join(tunnelDir, 'upstream-ca.pem'), testCa.caPem)
  const d = await startTestDaemon({
    baseDir: tunnelDir,
    env: { S: SECRET_BASIC },
    logStream: tunnelLogs.stream,
    config: {
      upstream: { caFile: 'upstream-ca.pem' },
      intercept: { enabled: true, caDir: 'ca' },
      providers: { dev: { type: 'env' } },
      credentials: { api: { provider: 'dev', ref: 'S', hosts: [`localhost:${tlsApi.port}`], inject: { type: 'oauth2', tokenUrl: oauth.tokenUrl, insecure: true, clientId: 'basic-client', scope: 'read' } } },
    },
  })
  const agent = new ProxyAgent({ uri: d.proxyUrl, requestTls: { ca: await readFile(path.join(tunnelDir, 'ca', 'ca.pem'), 'utf8') } })
  try {
    const r = await request(`https://localhost:${tlsApi.port}/tunnel`, { dispatcher: agent })
    await r.body.dump()
    assert.equal(r.statusCode, 200)
    const seen = tlsApi.received.at(-1)
    assert.equal(seen?.url, '/tunnel')
    assert.ok(oauth.isValid(seen?.headers.authorization?.replace(/^Bearer /, '') ?? ''), 'the TLS upstream got a token the server issued')
    assert.ok(tunnelLogs.lines().some((l) => l.includes('"mode":"intercept"') && l.includes('"outcome":"injected"')))
  } finally {
    await agent.close()
    await d.close(100)
    await tlsApi.close()
    await rm(tunnelDir, { recursive: true, force: true })
  }
  assertNoCanary(tunnelLogs.lines(), [SECRET_BASIC, ...oauth.issued])
})
