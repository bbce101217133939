import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { ProxyAgent, request } from 'undici'
import type { Daemon } from '../../src/daemon.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'
import { logWaiter } from '../helpers/log-waiter.ts'
import { rawRequest, statusOf } from '../helpers/raw-http.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const CANARY_BEARER = 'canary-bearer-7f3a9c1e5b'
const CANARY_KEY_OLD = 'canary-key-old-91d2e8a4'
const CANARY_KEY_NEW = 'canary-key-new-3c7b6f20'
const CANARY_USER = { username: 'canary-user-x1', password: 'canary-pass-5e8d7a' }
const CANARY_ROTATING = 'canary-rotating-a1b2c3d4'

let dir: string
let tls: Upstream
let plain: Upstream
let daemon: Daemon
let proxy: ProxyAgent
const CANARY_CRLF = 'canary-crlf-0e5a\r\nX-Evil: 1'
const env: Record<string, string | undefined> = { CANARY_BEARER, CRLF_SECRET: CANARY_CRLF }
const capture = captureLogs()
const logs = { ...capture, ...logWaiter(capture) }
const ADMIN_TOKEN = 'admin-token-0123456789abcdef'

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-e2e-'))
  const ca = await createTestCa()
  await writeFile(path.join(dir, 'ca.pem'), ca.caPem)
  await writeFile(path.join(dir, 'key.json'), JSON.stringify({ key: CANARY_KEY_OLD }))
  await writeFile(path.join(dir, 'basic.json'), JSON.stringify(CANARY_USER))
  await writeFile(path.join(dir, 'rotating'), CANARY_ROTATING + '-0')
  tls = await startUpstream(await ca.issue(['localhost', '127.0.0.1']))
  plain = await startUpstream()
  daemon = await startTestDaemon({
    baseDir: dir,
    env,
    logStream: logs.stream,
    config: {
      admin: { token: ADMIN_TOKEN },
      cache: { bustCooldown: '50ms' },
      upstream: { caFile: 'ca.pem', retryBodyLimit: 1024 },
      egress: 'deny',
      providers: { dev: { type: 'env' }, files: { type: 'file', dir: '.' } },
      credentials: {
        'tls-bearer': { provider: 'dev', ref: 'CANARY_BEARER', hosts: [`localhost:${tls.port}`], inject: { type: 'bearer' } },
        'tls-basic': { provider: 'files', ref: 'basic.json', hosts: [`127.0.0.1:${tls.port}`], inject: { type: 'basic' } },
        'plain-key': { provider: 'files', ref: 'key.json', field: 'key', hosts: [`127.0.0.1:${plain.port}`], inject: { type: 'header', header: 'X-Api-Key' }, insecure: true },
        rotating: { provider: 'files', ref: 'rotating', hosts: [`localhost:${plain.port}`], inject: { type: 'header', header: 'X-Token', value: 'tok {value}' }, insecure: true, ttl: '300ms' },
        crlf: { provider: 'dev', ref: 'CRLF_SECRET', hosts: ['crlf.test:443'], inject: { type: 'bearer' }, prefetch: false },
        missing: { provider: 'dev', ref: 'NOT_SET_ANYWHERE', hosts: ['missing.test'], inject: { type: 'bearer' }, prefetch: false },
      },
      routes: {
        secure: { upstream: `https://localhost:${tls.port}/base` },
        plain: { upstream: `http://127.0.0.1:${plain.port}` },
        crlf: { upstream: 'https://crlf.test' },
        missing: { upstream: 'https://missing.test' },
      },
    },
  })
  proxy = new ProxyAgent(daemon.proxyUrl)
})

after(async () => {
  await proxy?.close()
  await daemon?.close()
  await tls?.close()
  await plain?.close()
  await rm(dir, { recursive: true, force: true })
})

function last(u: Upstream) {
  const r = u.received.at(-1)
  assert.ok(r, 'the upstream received a request')
  return r
}

test('a reverse route injects the bearer credential over verified TLS and keeps path and query', async () => {
  const res = await fetch(`${daemon.proxyUrl}/secure/x/y?q=1`)
  assert.equal(res.status, 200)
  await res.arrayBuffer()
  const r = last(tls)
  assert.equal(r.url, '/base/x/y?q=1')
  assert.equal(r.headers.authorization, `Bearer ${CANARY_BEARER}`)
  assert.equal(r.headers.host, `localhost:${tls.port}`)
})

test('the plain forward proxy upgrades a credentialed http:// destination to TLS and injects', async () => {
  const res = await request(`http://localhost:${tls.port}/fwd`, { dispatcher: proxy })
  assert.equal(res.statusCode, 200)
  await res.body.dump()
  assert.equal(last(tls).url, '/fwd')
  assert.equal(last(tls).headers.authorization, `Bearer ${CANARY_BEARER}`)
})

test('basic credentials are rendered from a JSON username/password secret', async () => {
  const res = await request(`http://127.0.0.1:${tls.port}/basic`, { dispatcher: proxy })
  await res.body.dump()
  assert.equal(res.statusCode, 200)
  const expected = 'Basic ' + Buffer.from(`${CANARY_USER.username}:${CANARY_USER.password}`).toString('base64')
  assert.equal(last(tls).headers.authorization, expected)
})

test('an insecure: true credential is sent over plain http, and a client header of the same name is replaced', async () => {
  const res = await request(`http://127.0.0.1:${plain.port}/k`, { dispatcher: proxy, headers: { 'x-api-key': 'client-value' } })
  await res.body.dump()
  assert.equal(res.statusCode, 200)
  assert.equal(last(plain).headers['x-api-key'], CANARY_KEY_OLD)
})

test('a host no credential is bound to is refused with 403 egress_denied under egress: deny', async () => {
  const res = await request('http://127.0.0.2:9/', { dispatcher: proxy })
  assert.equal(res.statusCode, 403)
  assert.equal(res.headers['x-latchkey-error'], 'egress_denied')
  const body = (await res.body.json()) as { error: string; message: string }
  assert.equal(body.error, 'egress_denied')
})

test('a credentialed host on a port its pattern does not allow gets no credential', async () => {
  // localhost is bound on the TLS upstream's port only: the plain upstream's port on 127.0.0.1 is a different credential,
  // and an unbound port of a bound host is denied rather than sent without checking.
  const res = await request(`http://localhost:1/`, { dispatcher: proxy })
  assert.equal(res.statusCode, 403)
  await res.body.dump()
})

test('hop-by-hop headers, headers named in Connection, and Proxy-Authorization never reach the upstream', async () => {
  const before = plain.received.length
  const raw = await rawRequest(
    daemon.proxyUrl,
    `GET http://127.0.0.1:${plain.port}/hop HTTP/1.1\r\nHost: 127.0.0.1:${plain.port}\r\nConnection: close, x-drop-me\r\nX-Drop-Me: 1\r\n` +
      `Proxy-Authorization: Basic cHJveHk6cGFzcw==\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nKeep-Alive: timeout=5\r\nX-Keep: yes\r\n\r\n`,
  )
  assert.equal(statusOf(raw), 200)
  assert.equal(plain.received.length, before + 1)
  const h = last(plain).headers
  assert.equal(h['x-drop-me'], undefined)
  assert.equal(h['proxy-authorization'], undefined)
  assert.equal(h['proxy-connection'], undefined)
  assert.equal(h['keep-alive'], undefined)
  assert.equal(h.te, undefined)
  assert.equal(h['x-keep'], 'yes')
})

test('a request whose absolute URI and Host header disagree is rejected with 400 host_mismatch', async () => {
  const raw = await rawRequest(daemon.proxyUrl, `GET http://127.0.0.1:${plain.port}/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n`)
  assert.equal(statusOf(raw), 400)
  assert.match(raw, /x-latchkey-error: host_mismatch/i)
  assert.equal(plain.received.filter((r) => r.url === '/').length, 0)
})

test('userinfo in the request URI is rejected with 400 userinfo_not_allowed', async () => {
  const raw = await rawRequest(daemon.proxyUrl, `GET http://user:pw@127.0.0.1:${plain.port}/ HTTP/1.1\r\nHost: 127.0.0.1:${plain.port}\r\nConnection: close\r\n\r\n`)
  assert.equal(statusOf(raw), 400)
  assert.match(raw, /userinfo_not_allowed/)
})

test('conflicting Content-Length and Transfer-Encoding is refused before anything is forwarded', async () => {
  const before = plain.received.length
  const raw = await rawRequest(
    daemon.proxyUrl,
    `POST /plain/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /plain/admin HTTP/1.1\r\nHost: x\r\n\r\n`,
  )
  assert.equal(statusOf(raw), 400)
  assert.match(raw, /bad_request/)
  assert.equal(plain.received.length, before)
})

test('oversized request headers are refused with 431 headers_too_large', async () => {
  const raw = await rawRequest(daemon.proxyUrl, `GET /plain/ HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)
  assert.equal(statusOf(raw), 431)
  assert.match(raw, /headers_too_large/)
})

test('a secret that would render CR or LF into a header is never sent: 502 naming the credential, not the value', async () => {
  const res = await fetch(`${daemon.proxyUrl}/crlf/`)
  assert.equal(res.status, 502)
  const body = await res.text()
  assert.match(body, /header_value_invalid/)
  assert.match(body, /crlf/)
  assertNoCanary(body, [CANARY_CRLF, 'canary-crlf-0e5a'])
})

test('a failing provider fails only requests that need it: 503 secret_unavailable, others keep working', async () => {
  const res = await fetch(`${daemon.proxyUrl}/missing/`)
  assert.equal(res.status, 503)
  assert.equal(res.headers.get('x-latchkey-error'), 'secret_unavailable')
  await res.text()
  const ok = await fetch(`${daemon.proxyUrl}/plain/still-fine`)
  assert.equal(ok.status, 200)
  await ok.text()
})

test('an upstream 401 after rotation busts the secret, refetches once, and replays a buffered POST body', async () => {
  await writeFile(path.join(dir, 'key.json'), JSON.stringify({ key: CANARY_KEY_NEW }))
  plain.requireHeader('x-api-key', CANARY_KEY_NEW)
  const before = plain.received.length
  const res = await request(`http://127.0.0.1:${plain.port}/rotate`, { dispatcher: proxy, method: 'POST', body: 'hello body' })
  assert.equal(res.statusCode, 200)
  assert.deepEqual(await res.body.json(), { ok: true, bytes: 10 })
  const seen = plain.received.slice(before)
  assert.equal(seen.length, 2, 'one refused attempt, one replay')
  assert.equal(seen[0]?.headers['x-api-key'], CANARY_KEY_OLD)
  assert.equal(seen[1]?.headers['x-api-key'], CANARY_KEY_NEW)
  assert.equal(seen[1]?.body.toString(), 'hello body')
})

test('a body larger than retryBodyLimit is streamed and not replayed; the client gets the upstream 401 unchanged', async () => {
  plain.requireHeader('x-api-key', 'a-value-latchkey-does-not-hold')
  await new Promise((r) => setTimeout(r, 60)) // past bustCooldown
  const before = plain.received.length
  const big = Buffer.alloc(64 * 1024, 'x')
  const res = await request(`http://127.0.0.1:${plain.port}/big`, { dispatcher: proxy, method: 'POST', body: big })
  assert.equal(res.statusCode, 401)
  await res.body.dump()
  assert.equal(plain.received.length - before, 1)
  assert.equal(plain.received.at(-1)?.body.length, big.length, 'the whole body streamed through')
  plain.handle((_req, res) => res.end('ok'))
})

test('a file secret that changes on disk is picked up once its TTL passes', async () => {
  const seen: string[] = []
  plain.handle((req, res) => {
    seen.push(String(req.headers['x-token']))
    res.end('ok')
  })
  const get = async () => {
    const r = await request(`http://localhost:${plain.port}/t`, { dispatcher: proxy })
    await r.body.dump()
  }
  await get()
  await writeFile(path.join(dir, 'rotating'), CANARY_ROTATING + '-1')
  const deadline = Date.now() + 3000
  for (let i = 0; i < 30 && Date.now() < deadline && seen.at(-1) !== `tok ${CANARY_ROTATING}-1`; i++) {
    await new Promise((r) => setTimeout(r, 100))
    await get()
  }
  assert.equal(seen[0], `tok ${CANARY_ROTATING}-0`)
  assert.equal(seen.at(-1), `tok ${CANARY_ROTATING}-1`)
})

test('redirects are passed to the client, never followed', async () => {
  plain.handle((_req, res) => {
    res.writeHead(302, { location: 'https://elsewhere.example/' })
    res.end()
  })
  const res = await request(`http://127.0.0.1:${plain.port}/redirect`, { dispatcher: proxy })
  assert.equal(res.statusCode, 302)
  assert.equal(res.headers.location, 'https://elsewhere.example/')
  await res.body.dump()
  plain.handle((_req, res) => res.end('ok'))
})

test('response bodies stream through intact', async () => {
  const big = Buffer.alloc(4 * 1024 * 1024)
  for (let i = 0; i < big.length; i++) big[i] = i % 251
  plain.handle((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    res.end(big)
  })
  const res = await fetch(`${daemon.proxyUrl}/plain/big`)
  const got = Buffer.from(await res.arrayBuffer())
  assert.equal(got.length, big.length)
  assert.ok(got.equals(big))
  plain.handle((_req, res) => res.end('ok'))
})

test('CONNECT to a credentialed host is refused while interception is off, and CONNECT elsewhere under egress: deny too', async () => {
  const a = await rawRequest(daemon.proxyUrl, `CONNECT localhost:${tls.port} HTTP/1.1\r\nHost: localhost:${tls.port}\r\n\r\n`)
  assert.equal(statusOf(a), 403)
  assert.match(a, /intercept_disabled/)
  const b = await rawRequest(daemon.proxyUrl, `CONNECT 127.0.0.2:9 HTTP/1.1\r\nHost: 127.0.0.2:9\r\n\r\n`)
  assert.equal(statusOf(b), 403)
  assert.match(b, /egress_denied/)
})

test('an unknown route is 404 route_not_found and a non-http absolute URI is 400', async () => {
  const res = await fetch(`${daemon.proxyUrl}/nope/x`)
  assert.equal(res.status, 404)
  assert.equal(((await res.json()) as { error: string }).error, 'route_not_found')
  const raw = await rawRequest(daemon.proxyUrl, `GET ftp://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`)
  assert.equal(statusOf(raw), 400)
})

test('the admin listener serves health, readiness, metrics and a token-protected cache clear', async () => {
  assert.deepEqual(await (await fetch(`${daemon.adminUrl}/healthz`)).json(), { status: 'ok' })
  // Every prefetched credential is idle here (the `rotating` one has a 300 ms TTL and may not
  // have been used for many of them): each is kept fresh in the background, so this is 200
  // however long the earlier tests took.
  const ready = await fetch(`${daemon.adminUrl}/readyz`)
  assert.equal(ready.status, 200, await ready.text())
  const metrics = await (await fetch(`${daemon.adminUrl}/metrics`)).text()
  for (const name of ['latchkey_requests_total', 'latchkey_injections_total', 'latchkey_denials_total', 'latchkey_cache_hits_total', 'latchkey_cache_misses_total', 'latchkey_provider_fetches_total', 'latchkey_provider_fetch_duration_seconds', 'latchkey_busts_total']) {
    assert.ok(metrics.includes(name), `metrics include ${name}`)
  }
  const noToken = await fetch(`${daemon.adminUrl}/v1/cache/clear`, { method: 'POST', body: '{}' })
  assert.equal(noToken.status, 401)
  await noToken.text()
  const wrong = await fetch(`${daemon.adminUrl}/v1/cache/clear`, { method: 'POST', body: '{}', headers: { authorization: 'Bearer wrong-token-wrong-token' } })
  assert.equal(wrong.status, 401)
  await wrong.text()
  const clearedAt = logs.count()
  const one = await fetch(`${daemon.adminUrl}/v1/cache/clear`, { method: 'POST', body: '{"credential":"tls-bearer"}', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  assert.deepEqual(await one.json(), { cleared: 1 })
  const unknown = await fetch(`${daemon.adminUrl}/v1/cache/clear`, { method: 'POST', body: '{"credential":"nope"}', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  assert.equal(unknown.status, 404)
  await unknown.text()
  // The cleared credential is prefetched, so it is fetched again by itself, with no request:
  // readiness comes back as soon as that fetch has logged.
  await logs.next('the refetch after the clear', (r) => r.event === 'secret_fetched' && r.credential === 'tls-bearer', { from: clearedAt })
  const readyAgain = await fetch(`${daemon.adminUrl}/readyz`)
  assert.equal(readyAgain.status, 200, await readyAgain.text())
})

test('a burst of 500 concurrent requests right after a clear causes exactly one provider read', async () => {
  // Counted per credential from the log: the provider also serves `rotating`, which is kept
  // fresh in the background. The clear's own background refetch and the burst share one read.
  const from = logs.count()
  await fetch(`${daemon.adminUrl}/v1/cache/clear`, { method: 'POST', body: '{"credential":"plain-key"}', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }).then((r) => r.text())
  plain.handle((_req, res) => res.end('ok'))
  const results = await Promise.all(
    Array.from({ length: 500 }, async () => {
      const r = await request(`http://127.0.0.1:${plain.port}/burst`, { dispatcher: proxy })
      await r.body.dump()
      return r.statusCode
    }),
  )
  assert.ok(results.every((s) => s === 200))
  const reads = logs.records().slice(from).filter((r) => r.event === 'secret_fetched' && r.credential === 'plain-key')
  assert.equal(reads.length, 1)
})

test('no log line at trace level contains any canary secret in any encoding', () => {
  assert.ok(logs.lines().length > 20, 'the daemon logged at trace level')
  assert.ok(logs.text().includes('"credential":"crlf"'), 'the CR/LF secret was fetched and refused during this run')
  assertNoCanary(logs.lines(), [CANARY_BEARER, CANARY_KEY_OLD, CANARY_KEY_NEW, CANARY_ROTATING, CANARY_USER, CANARY_USER.password, CANARY_CRLF, 'canary-crlf-0e5a'])
})
