/**
 * The library API: `createLatchkeyInterceptor(config)` composed on an undici Agent, against
 * real local HTTPS upstreams.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import { after, before, test } from 'node:test'
import { rootCertificates } from 'node:tls'
import { Agent, fetch as undiciFetch, request } from 'undici'
import { createLatchkeyInterceptor, type LatchkeyInterceptor } from '../../src/shim/interceptor.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const CANARY = 'canary-shim-9b3e7c1d55'
const CANARY_OLD = 'canary-shim-old-2f81a6c4'
const CANARY_NEW = 'canary-shim-new-7d05e9b3'

let dir: string
let bound: Upstream
let other: Upstream
let rotating: Upstream
let base: Agent
let latchkey: LatchkeyInterceptor
let client: ReturnType<Agent['compose']>
const logs = captureLogs()
let accept = CANARY_OLD

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-shim-'))
  const ca = await createTestCa()
  await writeFile(path.join(dir, 'upstream-ca.pem'), ca.caPem)
  await writeFile(path.join(dir, 'rotating'), CANARY_OLD)
  const cert = await ca.issue(['localhost', '127.0.0.1'])
  bound = await startUpstream(cert)
  other = await startUpstream(cert)
  rotating = await startUpstream(cert)
  for (const u of [bound, other]) {
    u.handle((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ path: req.url, credential: req.headers.authorization === `Bearer ${CANARY}` ? 'present' : req.headers.authorization ? 'other' : 'absent' }))
    })
  }
  rotating.handle((req, res, body) => {
    if (req.headers['x-key'] !== accept) {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Key' })
      res.end(JSON.stringify({ error: 'unauthorized', path: req.url }))
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ ok: true, path: req.url, body: body.toString() }))
  })
  latchkey = createLatchkeyInterceptor(
    {
      log: { level: 'trace' },
      cache: { bustCooldown: '10ms' },
      upstream: { caFile: 'upstream-ca.pem', retryBodyLimit: 64 },
      providers: { dev: { type: 'env' }, files: { type: 'file', dir: '.' } },
      credentials: {
        api: { provider: 'dev', ref: 'SHIM_TOKEN', hosts: [`localhost:${bound.port}`], inject: { type: 'bearer' } },
        rot: { provider: 'files', ref: 'rotating', hosts: [`localhost:${rotating.port}`], inject: { type: 'header', header: 'X-Key' } },
        gone: { provider: 'dev', ref: 'NOT_SET', hosts: ['localhost:1'], inject: { type: 'bearer' }, prefetch: false },
      },
    },
    { env: { SHIM_TOKEN: CANARY }, baseDir: dir, logStream: logs.stream },
  )
  await latchkey.ready
  // The application's own dispatcher trusts the test CA for hosts latchkey does not handle.
  base = new Agent({ connect: { ca: [...rootCertificates, ca.caPem] } })
  client = base.compose(latchkey)
})

after(async () => {
  await base?.close()
  await latchkey?.close()
  await Promise.all([bound?.close(), other?.close(), rotating?.close()])
  await rm(dir, { recursive: true, force: true })
  assertNoCanary(logs.text(), [CANARY, CANARY_OLD, CANARY_NEW])
})

async function json(url: string, init: Parameters<typeof request>[1] = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await request(url, { dispatcher: client, ...init })
  return { status: r.statusCode, body: (await r.body.json()) as Record<string, unknown> }
}

test('a request to the bound host gets the credential; the same server under another name does not', async () => {
  assert.deepEqual(await json(`https://localhost:${bound.port}/a`), { status: 200, body: { path: '/a', credential: 'present' } })
  assert.deepEqual(await json(`https://127.0.0.1:${bound.port}/b`), { status: 200, body: { path: '/b', credential: 'absent' } })
  assert.deepEqual(await json(`https://localhost:${other.port}/c`), { status: 200, body: { path: '/c', credential: 'absent' } })
})

test('a client-sent Authorization is replaced, never sent twice', async () => {
  const r = await json(`https://localhost:${bound.port}/replace`, { headers: { authorization: 'Bearer from-the-app' } })
  assert.equal(r.body.credential, 'present')
  assert.equal(bound.received.at(-1)?.rawHeaders.filter((h) => h.toLowerCase() === 'authorization').length, 1)
})

test('undici fetch through the composed dispatcher gets the credential too', async () => {
  const r = await undiciFetch(`https://localhost:${bound.port}/fetch`, { dispatcher: client })
  assert.deepEqual(await r.json(), { path: '/fetch', credential: 'present' })
})

test('an upstream 401 after rotation is retried once with the new value, body included', async () => {
  const before = rotating.received.length
  accept = CANARY_NEW
  await writeFile(path.join(dir, 'rotating'), CANARY_NEW)
  const r = await json(`https://localhost:${rotating.port}/rotated`, { method: 'POST', body: '{"n":1}' })
  assert.deepEqual(r, { status: 200, body: { ok: true, path: '/rotated', body: '{"n":1}' } })
  const seen = rotating.received.slice(before).map((x) => x.headers['x-key'] === CANARY_NEW)
  assert.deepEqual(seen, [false, true], 'one refused attempt, one replay')
  assert.ok(logs.records().some((l) => l.event === 'replay' && l.mode === 'shim' && l.credential === 'rot'))
})

test('a 401 with an unchanged secret reaches the application unchanged, body and all, with no replay', async () => {
  const before = rotating.received.length
  accept = 'something-else-entirely'
  await new Promise((r) => setTimeout(r, 20)) // past bustCooldown
  const r = await json(`https://localhost:${rotating.port}/still-wrong`)
  assert.deepEqual(r, { status: 401, body: { error: 'unauthorized', path: '/still-wrong' } })
  assert.equal(rotating.received.length - before, 1)
})

test('a streamed body is not replayed: the 401 goes to the application and the next request has the new value', async () => {
  accept = CANARY_NEW
  await writeFile(path.join(dir, 'rotating'), CANARY_OLD)
  await new Promise((r) => setTimeout(r, 20))
  // Make the cache hold the old value again: a bust with an unchanged value is a no-op, so read it fresh.
  latchkey.broker.cache.clear()
  await writeFile(path.join(dir, 'rotating'), CANARY_OLD)
  const before = rotating.received.length
  const warm = await json(`https://localhost:${rotating.port}/warm`)
  assert.equal(warm.status, 401)
  await writeFile(path.join(dir, 'rotating'), CANARY_NEW)
  await new Promise((r) => setTimeout(r, 20))
  const r = await json(`https://localhost:${rotating.port}/stream`, { method: 'POST', body: Readable.from([Buffer.from('streamed')]) })
  assert.equal(r.status, 401)
  const next = await json(`https://localhost:${rotating.port}/next`)
  assert.equal(next.status, 200)
  assert.deepEqual(rotating.received.slice(before).map((x) => x.url), ['/warm', '/stream', '/next'])
})

test('a body over retryBodyLimit is sent once and not replayed', async () => {
  accept = CANARY_OLD
  await new Promise((r) => setTimeout(r, 20))
  const before = rotating.received.length
  const r = await json(`https://localhost:${rotating.port}/big`, { method: 'POST', body: 'x'.repeat(65) })
  assert.equal(r.status, 401)
  assert.equal(rotating.received.length - before, 1)
})

test('a credential that cannot be fetched fails the request with secret_unavailable, naming the credential only', async () => {
  await assert.rejects(request('https://localhost:1/', { dispatcher: client }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'secret_unavailable')
    assert.match(err.message, /credential gone/)
    return true
  })
})

test("the shim's own agent resolves names without libuv's thread pool: a request is served while the pool is busy", async () => {
  // Four key derivations fill the pool (4 threads unless UV_THREADPOOL_SIZE says otherwise);
  // dns.lookup would queue behind them, the shared resolver does not.
  const { pbkdf2 } = await import('node:crypto')
  const poolSize = Number(process.env.UV_THREADPOOL_SIZE ?? 4)
  const fresh = createLatchkeyInterceptor(
    {
      upstream: { caFile: 'upstream-ca.pem' },
      providers: { dev: { type: 'env' } },
      credentials: { api: { provider: 'dev', ref: 'SHIM_TOKEN', hosts: [`localhost:${bound.port}`], inject: { type: 'bearer' } } },
    },
    { env: { SHIM_TOKEN: CANARY }, baseDir: dir, logStream: logs.stream },
  )
  await fresh.ready
  const events: string[] = []
  const busy = Array.from({ length: poolSize }, () => new Promise<void>((resolve) => pbkdf2('p', 's', 3_000_000, 32, 'sha256', () => (events.push('pool free'), resolve()))))
  try {
    const r = await request(`https://localhost:${bound.port}/while-the-pool-is-busy`, { dispatcher: base.compose(fresh) })
    events.push(`response ${r.statusCode}`)
    assert.equal(((await r.body.json()) as { credential: string }).credential, 'present')
    assert.equal(events[0], 'response 200', `the response came first: ${events.join(', ')}`)
  } finally {
    await Promise.all(busy)
    await fresh.close()
  }
})
