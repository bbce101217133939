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
import { logWaiter } from '../helpers/log-waiter.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { startAzureServer, type AzureServer } from '../servers/azure-server.ts'
import { startEntraServer, type EntraServer } from '../servers/entra-server.ts'
import { startGcpServer, type GcpServer } from '../servers/gcp-server.ts'
import { startGoogleTokenServer, type GoogleTokenServer } from '../servers/google-token-server.ts'

// The Google and Azure SDKs read their identity settings from the process environment (as they
// do in the sidecar); nothing from the machine running the tests may leak in.
for (const k of Object.keys(process.env)) if (/^(GOOGLE_|GCLOUD_|AZURE_|IDENTITY_|MSI_)/.test(k)) delete process.env[k]
process.env.NO_PROXY = '127.0.0.1,localhost'

const CLIENT_SECRET = 'canary-entra-client-secret-31f7a0'
const CLIENT_SECRET_2 = 'canary-entra-client-secret-two-6cd2'
const SA = generateKeyPairSync('rsa', { modulusLength: 2048 })
const SA_KEY_PEM = SA.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
const SA_EMAIL = 'reader@latchkey-test.iam.gserviceaccount.com'
let saTokens: GoogleTokenServer

let dir: string
let gcp: GcpServer
let entra: EntraServer
let entraTls: { cert: string; key: string }
let kv: AzureServer
let api: Upstream
let daemon: Daemon
const logs = captureLogs()
const client = new Agent()
/** Authorization headers seen per upstream route. */
const seen = new Map<string, string[]>()

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-cloud-tokens-'))
  const ca = await createTestCa()
  await writeFile(path.join(dir, 'ca.pem'), ca.caPem)
  gcp = await startGcpServer({ tokenTtl: 3600 })
  saTokens = await startGoogleTokenServer({ email: SA_EMAIL, publicKey: SA.publicKey })
  await writeFile(path.join(dir, 'sa-key.json'), JSON.stringify({ type: 'service_account', project_id: 'latchkey-test', private_key_id: 'k1', private_key: SA_KEY_PEM, client_email: SA_EMAIL, token_uri: saTokens.tokenUri }))
  await writeFile(path.join(dir, 'subject-token'), gcp.subjectToken)
  await writeFile(path.join(dir, 'gcp-credentials.json'), gcp.externalAccountJson(path.join(dir, 'subject-token')))
  entraTls = await ca.issue(['127.0.0.1'])
  entra = await startEntraServer({ tls: entraTls, clientId: 'app-1', secret: CLIENT_SECRET })
  await writeFile(path.join(dir, 'entra-secret'), CLIENT_SECRET)
  kv = await startAzureServer()
  process.env.IDENTITY_ENDPOINT = kv.identityEndpoint
  process.env.IDENTITY_HEADER = kv.identityHeader
  // Application Default Credentials find the same Workload Identity Federation file through the variable.
  process.env.GOOGLE_APPLICATION_CREDENTIALS = path.join(dir, 'gcp-credentials.json')
  // ADC looks the project up (cloudresourcemanager) unless it is named.
  process.env.GOOGLE_CLOUD_PROJECT = gcp.projectId
  api = await startUpstream()
  api.handle((req, res) => {
    const route = String(req.url).split('/')[1] ?? ''
    seen.set(route, [...(seen.get(route) ?? []), String(req.headers.authorization)])
    // The first request of the `refused` route is answered 401, as an API does for a revoked token.
    const status = route === 'refused' && (seen.get(route)?.length ?? 0) === 1 ? 401 : 200
    res.writeHead(status).end()
  })
  const host = `127.0.0.1:${api.port}`
  daemon = await startTestDaemon({
    baseDir: dir,
    logStream: logs.stream,
    config: {
      cache: { bustCooldown: '50ms' },
      upstream: { caFile: 'ca.pem' },
      providers: { files: { type: 'file', dir: '.' } },
      credentials: {
        // One upstream: the path prefix tells the routes apart, the credential is the same binding.
        gcp: { provider: 'files', ref: 'gcp-credentials.json', hosts: [host], insecure: true, inject: { type: 'gcp-access-token', scopes: ['https://www.googleapis.com/auth/cloud-platform'] } },
      },
      routes: { gcp: { upstream: `${api.url}/gcp` }, refused: { upstream: `${api.url}/refused` } },
    },
  })
})

after(async () => {
  await daemon?.close(100)
  await client.close()
  await Promise.all([api?.close(), gcp?.close(), entra?.close(), kv?.close(), saTokens?.close()])
  await rm(dir, { recursive: true, force: true })
})

async function get(d: Daemon, route: string): Promise<number> {
  const r = await request(`${d.proxyUrl}/${route}/x`, { dispatcher: client })
  await r.body.dump()
  return r.statusCode
}

test('gcp-access-token: credentials JSON held in a provider are exchanged at the token endpoint and the API gets the access token', async () => {
  const before = gcp.requestCount('token')
  assert.equal(await get(daemon, 'gcp'), 200)
  const auth = seen.get('gcp')?.at(-1) ?? ''
  assert.match(auth, /^Bearer ya29\./)
  assert.equal(gcp.requestCount('token'), before) // minted at start, served from the cache
})

test('gcp-access-token: a token the API refuses is replaced by a new exchange and the request replayed', async () => {
  const before = gcp.requestCount('token')
  assert.equal(await get(daemon, 'refused'), 200)
  const [first, second] = seen.get('refused') ?? []
  assert.ok(first && second && first !== second, 'replayed with a new token')
  assert.equal(gcp.requestCount('token'), before + 1)
})

test('gcp-access-token from a service-account key: the JWT signed with the key is exchanged at the key\'s token_uri', async () => {
  const d = await startTestDaemon({
    baseDir: dir,
    logStream: logs.stream,
    config: {
      providers: { files: { type: 'file', dir: '.' } },
      credentials: { sa: { provider: 'files', ref: 'sa-key.json', hosts: [`127.0.0.1:${api.port}`], insecure: true, inject: { type: 'gcp-access-token', scopes: ['https://www.googleapis.com/auth/devstorage.read_only'] } } },
      routes: { sa: { upstream: `${api.url}/sa` } },
    },
  })
  try {
    assert.deepEqual(d.notReady(), [])
    assert.equal(await get(d, 'sa'), 200)
    assert.equal(seen.get('sa')?.at(-1), `Bearer ${saTokens.issued.at(-1)}`)
    assert.equal(saTokens.issued.length, 1)
  } finally {
    await d.close(100)
  }
})

test('gcp-access-token without provider and ref uses Application Default Credentials', async () => {
  const d = await startTestDaemon({
    logStream: logs.stream,
    config: {
      credentials: { adc: { hosts: [`127.0.0.1:${api.port}`], insecure: true, inject: { type: 'gcp-access-token' } } },
      routes: { adc: { upstream: `${api.url}/adc` } },
    },
  })
  try {
    assert.equal(await get(d, 'adc'), 200)
    assert.match(seen.get('adc')?.at(-1) ?? '', /^Bearer ya29\./)
  } finally {
    await d.close(100)
  }
})

test('azure-access-token: a client secret held in a provider gets an Entra token (ClientSecretCredential against a local authority); a rotated secret is refetched once', async () => {
  const d = await startTestDaemon({
    baseDir: dir,
    logStream: logs.stream,
    config: {
      cache: { bustCooldown: '50ms' },
      upstream: { caFile: 'ca.pem' },
      providers: { files: { type: 'file', dir: '.' } },
      credentials: {
        entra: { provider: 'files', ref: 'entra-secret', hosts: [`127.0.0.1:${api.port}`], insecure: true, inject: { type: 'azure-access-token', scopes: ['api://app-2/.default'], tenantId: entra.tenantId, clientId: 'app-1', authorityHost: entra.url } },
      },
      routes: { entra: { upstream: `${api.url}/entra` } },
    },
  })
  try {
    assert.deepEqual(d.notReady(), [])
    assert.equal(await get(d, 'entra'), 200)
    assert.equal(seen.get('entra')?.at(-1), `Bearer ${entra.issued.at(-1)}`)
    // The secret is rotated in Entra and in the store; the cached one is refused once, then the new one is read.
    entra.rotateSecret(CLIENT_SECRET_2)
    await writeFile(path.join(dir, 'entra-secret'), CLIENT_SECRET_2)
    d.cache.clear(d.config.credentials.entra)
    assert.equal(await get(d, 'entra'), 200)
    assert.equal(seen.get('entra')?.at(-1), `Bearer ${entra.issued.at(-1)}`)
    assert.equal(entra.issued.length, 2)
  } finally {
    await d.close(100)
  }
})

test('azure-access-token without provider and ref uses DefaultAzureCredential (managed identity here)', async () => {
  const d = await startTestDaemon({
    logStream: logs.stream,
    config: {
      credentials: { mi: { hosts: [`127.0.0.1:${api.port}`], insecure: true, inject: { type: 'azure-access-token', scopes: ['https://management.azure.com/.default'] } } },
      routes: { mi: { upstream: `${api.url}/mi` } },
    },
  })
  try {
    assert.equal(await get(d, 'mi'), 200)
    assert.match(seen.get('mi')?.at(-1) ?? '', /^Bearer ./)
  } finally {
    await d.close(100)
  }
})

test('short-lived Google and Entra tokens are minted again ahead of expiry in the background, with no request; the next request carries a refreshed one', async () => {
  // Tokens that live 4 s: cached for half of that (the skew is capped at half a lifetime), refreshed ahead.
  const shortSa = await startGoogleTokenServer({ email: SA_EMAIL, publicKey: SA.publicKey }, 4)
  await writeFile(path.join(dir, 'sa-short.json'), JSON.stringify({ type: 'service_account', project_id: 'latchkey-test', private_key_id: 'k1', private_key: SA_KEY_PEM, client_email: SA_EMAIL, token_uri: shortSa.tokenUri }))
  const shortEntra = await startEntraServer({ tls: entraTls, clientId: 'app-1', secret: CLIENT_SECRET, tokenTtl: 4 })
  await writeFile(path.join(dir, 'entra-short-secret'), CLIENT_SECRET)
  const capture = captureLogs()
  const waiter = logWaiter(capture)
  const d = await startTestDaemon({
    baseDir: dir,
    logStream: waiter.stream,
    config: {
      upstream: { caFile: 'ca.pem' },
      providers: { files: { type: 'file', dir: '.' } },
      credentials: {
        gshort: { provider: 'files', ref: 'sa-short.json', hosts: [`127.0.0.1:${api.port}`], insecure: true, inject: { type: 'gcp-access-token' } },
        ashort: { provider: 'files', ref: 'entra-short-secret', hosts: [`localhost:${api.port}`], insecure: true, inject: { type: 'azure-access-token', scopes: ['api://app-2/.default'], tenantId: shortEntra.tenantId, clientId: 'app-1', authorityHost: shortEntra.url } },
      },
      routes: { gshort: { upstream: `${api.url}/gshort` }, ashort: { upstream: `http://localhost:${api.port}/ashort` } },
    },
  })
  try {
    for (const name of ['gshort', 'ashort']) {
      // The first fetch at start, then two more with no request in between.
      let from = 0
      for (let i = 0; i < 3; i++) from = (await waiter.next(`${name} fetch ${i + 1}`, (r) => r.event === 'secret_fetched' && r.credential === name, { from })).index + 1
    }
    assert.ok(shortSa.issued.length >= 3, `${shortSa.issued.length} Google tokens`)
    assert.ok(shortEntra.issued.length >= 3, `${shortEntra.issued.length} Entra tokens`)
    // A refreshed token, not the first (a refresh may be under way: the newest or the one before it).
    for (const [route, issued] of [['gshort', shortSa.issued], ['ashort', shortEntra.issued]] as const) {
      assert.equal(await get(d, route), 200)
      const sent = (seen.get(route)?.at(-1) ?? '').replace(/^Bearer /, '')
      assert.ok(issued.indexOf(sent) >= issued.length - 2 && issued.indexOf(sent) >= 2, `${route}: token ${issued.indexOf(sent) + 1} of ${issued.length}`)
    }
  } finally {
    await d.close(100)
    await shortSa.close()
    await shortEntra.close()
  }
  assertNoCanary(capture.lines(), [...shortSa.issued, ...shortEntra.issued, CLIENT_SECRET, SA_KEY_PEM])
})

test('gcp-access-token and azure-access-token reach the API through the forward proxy and the in-process shim too', async () => {
  const proxy = new ProxyAgent(daemon.proxyUrl)
  try {
    const r = await request(`${api.url}/gcp-forward/x`, { dispatcher: proxy })
    await r.body.dump()
    assert.equal(r.statusCode, 200)
    assert.match(seen.get('gcp-forward')?.at(-1) ?? '', /^Bearer ya29\./)
  } finally {
    await proxy.close()
  }
  const shimConfig = {
    log: { level: 'trace' },
    upstream: { caFile: 'ca.pem' },
    providers: { files: { type: 'file', dir: '.' } },
    credentials: {
      gcp: { provider: 'files', ref: 'gcp-credentials.json', hosts: [`127.0.0.1:${api.port}`], insecure: true, inject: { type: 'gcp-access-token', scopes: ['https://www.googleapis.com/auth/cloud-platform'] } },
      mi: { hosts: [`localhost:${api.port}`], insecure: true, inject: { type: 'azure-access-token', scopes: ['https://management.azure.com/.default'] } },
    },
  }
  const shim = createLatchkeyInterceptor(shimConfig, { baseDir: dir, logStream: logs.stream })
  const base = new Agent()
  try {
    await shim.ready
    for (const [origin, route, expected] of [[api.url, 'gcp-shim', /^Bearer ya29\./], [`http://localhost:${api.port}`, 'mi-shim', /^Bearer ./]] as const) {
      const r = await request(`${origin}/${route}/x`, { dispatcher: base.compose(shim) })
      await r.body.dump()
      assert.equal(r.statusCode, 200, route)
      assert.match(seen.get(route)?.at(-1) ?? '', expected, route)
    }
  } finally {
    await shim.close()
    await shim.broker.minters.closeAll()
    await base.close()
  }
  // The managed identity's token through the forward proxy of a daemon of its own.
  const d = await startTestDaemon({
    logStream: logs.stream,
    config: { credentials: { mi: { hosts: [`127.0.0.1:${api.port}`], insecure: true, inject: { type: 'azure-access-token', scopes: ['https://management.azure.com/.default'] } } } },
  })
  const miProxy = new ProxyAgent(d.proxyUrl)
  try {
    const r = await request(`${api.url}/mi-forward/x`, { dispatcher: miProxy })
    await r.body.dump()
    assert.equal(r.statusCode, 200)
    assert.match(seen.get('mi-forward')?.at(-1) ?? '', /^Bearer ./)
  } finally {
    await miProxy.close()
    await d.close(100)
  }
})

test('no token, client secret or credentials file appears in any log line, at trace level, in any encoding', async () => {
  const tokens = [...seen.values()].flat().map((h) => h.replace(/^Bearer /, ''))
  assert.ok(tokens.length >= 5)
  const subject = await readFile(path.join(dir, 'subject-token'), 'utf8').catch(() => gcp.subjectToken)
  const keyLines = SA_KEY_PEM.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----'))
  assertNoCanary(logs.lines(), [CLIENT_SECRET, CLIENT_SECRET_2, ...new Set(tokens), ...entra.issued, subject, SA_KEY_PEM, ...keyLines, ...saTokens.assertions, ...saTokens.issued])
})
