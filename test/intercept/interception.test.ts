/**
 * Interception at the TLS level, with Node's own TLS client so each handshake parameter
 * (SNI, ALPN, trusted CA) is chosen by the test: what is refused, what the upstream sees.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import tls from 'node:tls'
import { ProxyAgent, request } from 'undici'
import type { Daemon } from '../../src/daemon.ts'
import { CertificateAuthority } from '../../src/intercept/certificate-authority.ts'
import { createInterceptor, type Interceptor } from '../../src/intercept/interceptor.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'
import { rawRequest, statusOf } from '../helpers/raw-http.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const CANARY = 'canary-tls-4e7a19c0d3'
const CANARY_IP = 'canary-ipcred-b28f6a51'
const CANARY_OLD = 'canary-rot-old-5a9c33e1'
const CANARY_NEW = 'canary-rot-new-0d4b7f26'

let dir: string
let up: Upstream
let ipUp: Upstream
/** Bound hosts whose upstream certificate latchkey must refuse: another CA, and the right CA for another name. */
let untrustedUp: Upstream
let wrongNameUp: Upstream
let daemon: Daemon
let caPem: string
let interceptor: Interceptor
const logs = captureLogs()

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-tls-'))
  const testCa = await createTestCa()
  await writeFile(path.join(dir, 'upstream-ca.pem'), testCa.caPem)
  await writeFile(path.join(dir, 'rotating'), CANARY_OLD)
  const cert = await testCa.issue(['localhost', '127.0.0.1'])
  up = await startUpstream(cert)
  ipUp = await startUpstream(cert)
  untrustedUp = await startUpstream(await (await createTestCa()).issue(['localhost']))
  wrongNameUp = await startUpstream(await testCa.issue(['other.example']))
  for (const u of [up, ipUp]) {
    u.handle((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ path: req.url, host: req.headers.host, auth: req.headers.authorization ? 'set' : 'none', key: req.headers['x-key'] === undefined ? 'none' : 'set' }))
    })
  }
  daemon = await startTestDaemon(
    {
      baseDir: dir,
      env: { TLS_TOKEN: CANARY, IP_TOKEN: CANARY_IP },
      logStream: logs.stream,
      config: {
        cache: { bustCooldown: '10ms' },
        upstream: { caFile: 'upstream-ca.pem' },
        egress: 'deny',
        intercept: { enabled: true, caDir: 'ca', leafTtl: '1h' },
        providers: { dev: { type: 'env' }, files: { type: 'file', dir: '.' } },
        credentials: {
          api: { provider: 'dev', ref: 'TLS_TOKEN', hosts: [`localhost:${up.port}`], inject: { type: 'bearer' } },
          ip: { provider: 'dev', ref: 'IP_TOKEN', hosts: [`127.0.0.1:${ipUp.port}`], inject: { type: 'bearer' } },
          untrusted: { provider: 'dev', ref: 'TLS_TOKEN', hosts: [`localhost:${untrustedUp.port}`], inject: { type: 'bearer' } },
          wrongName: { provider: 'dev', ref: 'TLS_TOKEN', hosts: [`localhost:${wrongNameUp.port}`], inject: { type: 'bearer' } },
        },
      },
    },
    { interceptor: async (broker, forwarder) => (interceptor = await createInterceptor(broker, forwarder)) },
  )
  caPem = await readFile(path.join(dir, 'ca', 'ca.pem'), 'utf8')
})

after(async () => {
  await daemon?.close(2000)
  await up?.close()
  await ipUp?.close()
  await untrustedUp?.close()
  await wrongNameUp?.close()
  await rm(dir, { recursive: true, force: true })
  assertNoCanary(logs.text(), [CANARY, CANARY_IP, CANARY_OLD, CANARY_NEW])
})

/** CONNECT through the proxy; resolves with the raw tunnel socket once latchkey answered 200. */
function connect(authority: string): Promise<Socket> {
  const u = new URL(daemon.proxyUrl)
  return new Promise((resolve, reject) => {
    http
      .request({ host: u.hostname, port: Number(u.port), method: 'CONNECT', path: authority })
      .on('connect', (res, socket) => (res.statusCode === 200 ? resolve(socket) : reject(new Error(`CONNECT answered ${res.statusCode}`))))
      .on('error', reject)
      .end()
  })
}

type Handshake = { ok: true; socket: tls.TLSSocket } | { ok: false; error: Error }

function handshake(socket: Socket, o: tls.ConnectionOptions): Promise<Handshake> {
  return new Promise((resolve) => {
    const t = tls.connect({ socket, ca: caPem, ...o })
    const timer = setTimeout(() => {
      t.destroy()
      resolve({ ok: false, error: new Error('handshake timed out') })
    }, 5000)
    t.once('secureConnect', () => {
      clearTimeout(timer)
      resolve({ ok: true, socket: t })
    })
    t.once('error', (error) => {
      clearTimeout(timer)
      resolve({ ok: false, error })
    })
  })
}

/** Send one raw HTTP/1.1 request on a TLS socket and read the whole answer (the request says Connection: close). */
function exchange(t: tls.TLSSocket, raw: string): Promise<string> {
  return new Promise((resolve) => {
    let text = ''
    t.setEncoding('utf8')
    t.on('data', (c: string) => (text += c))
    t.once('close', () => resolve(text))
    t.once('error', () => resolve(text))
    t.write(raw)
  })
}

/** The first log record that matches, waiting for it (bounded: 5 s): latchkey logs after the client already saw the failure. */
async function waitForRecord(match: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  for (let i = 0; i < 200; i++) {
    const found = logs.records().find(match)
    if (found) return found
    await new Promise((r) => setTimeout(r, 25))
  }
  assert.fail('no matching log record')
}

test('the daemon CA is constrained to exactly the hosts its credentials are bound to', async () => {
  const ca = await CertificateAuthority.load(caPem, await readFile(path.join(dir, 'ca', 'ca-key.pem'), 'utf8'))
  assert.deepEqual(ca.scope, { dns: ['localhost'], ip: ['127.0.0.1'] })
})

test('a handshake with SNI naming the CONNECT host gets a leaf for it, ALPN http/1.1, and the credential is injected', async () => {
  const before = up.received.length
  const h = await handshake(await connect(`localhost:${up.port}`), { servername: 'localhost', ALPNProtocols: ['h2', 'http/1.1'] })
  assert.ok(h.ok, h.ok ? '' : h.error.message)
  assert.equal(h.socket.alpnProtocol, 'http/1.1', 'h2 is never chosen')
  const cert = h.socket.getPeerX509Certificate()
  assert.ok(cert?.checkHost('localhost'))
  assert.equal(cert?.issuer, 'CN=latchkey interception CA')
  const answer = await exchange(h.socket, `GET /sni-ok?q=1 HTTP/1.1\r\nHost: localhost:${up.port}\r\nConnection: close\r\n\r\n`)
  assert.equal(statusOf(answer), 200)
  assert.match(answer, /"auth":"set"/)
  assert.equal(up.received.length, before + 1)
  assert.equal(up.received.at(-1)?.url, '/sni-ok?q=1')
})

test('an SNI for another name fails the handshake and the upstream receives nothing', async () => {
  const before = up.received.length
  const h = await handshake(await connect(`localhost:${up.port}`), { servername: 'evil.example' })
  assert.equal(h.ok, false)
  assert.equal(up.received.length, before)
  const refused = logs.records().filter((l) => l.event === 'intercept_refused' && l.reason === 'sni_mismatch')
  assert.equal(refused.length, 1)
  assert.equal(refused[0]?.sni, 'evil.example')
})

test('a handshake without SNI to a DNS-name CONNECT fails', async () => {
  const before = up.received.length
  // An IP as servername makes Node send no SNI at all.
  const h = await handshake(await connect(`localhost:${up.port}`), { servername: '', host: '127.0.0.1', checkServerIdentity: () => undefined })
  assert.equal(h.ok, false)
  assert.equal(up.received.length, before)
  assert.ok(logs.records().some((l) => l.event === 'intercept_refused' && l.reason === 'sni_missing'))
})

test('an IP-literal CONNECT without SNI gets a leaf for the IP and its credential', async () => {
  const h = await handshake(await connect(`127.0.0.1:${ipUp.port}`), { host: '127.0.0.1', servername: '' })
  assert.ok(h.ok, h.ok ? '' : h.error.message)
  assert.ok(h.socket.getPeerX509Certificate()?.checkIP('127.0.0.1'))
  const answer = await exchange(h.socket, `GET /ip HTTP/1.1\r\nHost: 127.0.0.1:${ipUp.port}\r\nConnection: close\r\n\r\n`)
  assert.equal(statusOf(answer), 200)
  assert.match(answer, /"auth":"set"/)
})

test('a client offering only h2 is refused at the handshake, logged as no_alpn_protocol (not as a CA problem)', async () => {
  const h = await handshake(await connect(`localhost:${up.port}`), { servername: 'localhost', ALPNProtocols: ['h2'] })
  assert.equal(h.ok, false)
  const refused = await waitForRecord((l) => l.event === 'intercept_refused' && l.reason === 'no_alpn_protocol')
  assert.match(String(refused.msg), /http\/1\.1 inside tunnels/)
  assert.doesNotMatch(String(refused.msg), /trust/)
})

test('with egress: deny, CONNECT to a host no credential is bound to is refused with 403 egress_denied, even with interception on', async () => {
  const tunnels = logs.records().filter((l) => l.event === 'intercept_tunnel').length
  const answer = await rawRequest(daemon.proxyUrl, 'CONNECT unbound.invalid:443 HTTP/1.1\r\nHost: unbound.invalid:443\r\n\r\n')
  assert.equal(statusOf(answer), 403)
  assert.match(answer, /x-latchkey-error: egress_denied/i)
  assert.equal(logs.records().filter((l) => l.event === 'intercept_tunnel').length, tunnels, 'no tunnel was opened')
})

for (const [what, upstream] of [
  ['a certificate from a CA latchkey does not trust', () => untrustedUp],
  ['a certificate for another name', () => wrongNameUp],
] as const) {
  test(`inside a tunnel, an upstream with ${what} gets 502 upstream_tls_error and never the credential`, async () => {
    const u = upstream()
    const h = await handshake(await connect(`localhost:${u.port}`), { servername: 'localhost' })
    assert.ok(h.ok, h.ok ? '' : h.error.message)
    const answer = await exchange(h.socket, `GET /tls-refused HTTP/1.1\r\nHost: localhost:${u.port}\r\nConnection: close\r\n\r\n`)
    assert.equal(statusOf(answer), 502)
    assert.match(answer, /x-latchkey-error: upstream_tls_error/i)
    assert.equal(u.received.length, 0, 'TLS failed before any request (and so any header) was sent')
    assertNoCanary(answer, [CANARY])
  })
}

test('a client that does not trust the latchkey CA fails closed: no fallback to a blind tunnel', async () => {
  const before = up.received.length
  const h = await handshake(await connect(`localhost:${up.port}`), { servername: 'localhost', ca: (await createTestCa()).caPem })
  assert.equal(h.ok, false)
  assert.match(h.error.message, /certificate/)
  assert.equal(up.received.length, before)
})

test('a request inside the tunnel whose Host names another destination is refused with 400 host_mismatch', async () => {
  const before = up.received.length
  for (const host of ['other.example', `localhost:${up.port + 1}`, 'localhost']) {
    const h = await handshake(await connect(`localhost:${up.port}`), { servername: 'localhost' })
    assert.ok(h.ok)
    const answer = await exchange(h.socket, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
    assert.equal(statusOf(answer), 400, host)
    assert.match(answer, /x-latchkey-error: host_mismatch/i)
  }
  const h = await handshake(await connect(`localhost:${up.port}`), { servername: 'localhost' })
  assert.ok(h.ok)
  const absolute = await exchange(h.socket, `GET https://other.example/ HTTP/1.1\r\nHost: localhost:${up.port}\r\nConnection: close\r\n\r\n`)
  assert.equal(statusOf(absolute), 400)
  assert.equal(up.received.length, before)
})

test('a request inside the tunnel with two Host headers is refused with 400 bad_request and reaches nothing', async () => {
  const before = up.received.length
  for (const second of ['other.example', `localhost:${up.port}`]) {
    const h = await handshake(await connect(`localhost:${up.port}`), { servername: 'localhost' })
    assert.ok(h.ok)
    const answer = await exchange(h.socket, `GET / HTTP/1.1\r\nHost: localhost:${up.port}\r\nHost: ${second}\r\nConnection: close\r\n\r\n`)
    assert.equal(statusOf(answer), 400, second)
    assert.match(answer, /x-latchkey-error: bad_request/i)
  }
  assert.equal(up.received.length, before)
})

test('CONNECT to a bound host on another port is refused with 403 intercept_port_not_allowed', async () => {
  const answer = await rawRequest(daemon.proxyUrl, `CONNECT localhost:${up.port + 7} HTTP/1.1\r\nHost: localhost:${up.port + 7}\r\n\r\n`)
  assert.equal(statusOf(answer), 403)
  assert.match(answer, /intercept_port_not_allowed/)
})

test('several requests over one kept-alive tunnel all carry the credential', async () => {
  const before = up.received.length
  const tunnelsBefore = logs.records().filter((l) => l.event === 'intercept_tunnel').length
  const h = await handshake(await connect(`localhost:${up.port}`), { servername: 'localhost' })
  assert.ok(h.ok)
  const host = `Host: localhost:${up.port}\r\n`
  const answer = await exchange(h.socket, `GET /keep/1 HTTP/1.1\r\n${host}\r\nGET /keep/2 HTTP/1.1\r\n${host}\r\nGET /keep/3 HTTP/1.1\r\n${host}Connection: close\r\n\r\n`)
  assert.equal(answer.match(/^HTTP\/1\.1 200/gm)?.length, 3)
  assert.equal(answer.match(/"auth":"set"/g)?.length, 3)
  assert.deepEqual(up.received.slice(before).map((r) => r.url), ['/keep/1', '/keep/2', '/keep/3'])
  assert.equal(logs.records().filter((l) => l.event === 'intercept_tunnel').length - tunnelsBefore, 1)
})

test('an undici ProxyAgent trusting the CA gets the credential on every request', async () => {
  const agent = new ProxyAgent({ uri: daemon.proxyUrl, requestTls: { ca: caPem } })
  try {
    for (let i = 0; i < 3; i++) {
      const r = await request(`https://localhost:${up.port}/agent/${i}`, { dispatcher: agent })
      assert.equal(r.statusCode, 200)
      assert.equal(((await r.body.json()) as { auth: string }).auth, 'set')
    }
  } finally {
    await agent.close()
  }
})

test('an upstream 401 after rotation inside the tunnel is answered by a replay with the new value', async () => {
  // A dedicated daemon: a file credential that rotates, and an upstream that accepts only the new value.
  const rotDir = await mkdtemp(path.join(tmpdir(), 'latchkey-tls-rot-'))
  const testCa = await createTestCa()
  await writeFile(path.join(rotDir, 'upstream-ca.pem'), testCa.caPem)
  await writeFile(path.join(rotDir, 'key'), CANARY_OLD)
  const rot = await startUpstream(await testCa.issue(['localhost']))
  rot.requireHeader('x-key', CANARY_NEW)
  const d = await startTestDaemon(
    {
      baseDir: rotDir,
      logStream: logs.stream,
      config: {
        cache: { bustCooldown: '10ms' },
        upstream: { caFile: 'upstream-ca.pem' },
        intercept: { enabled: true, caDir: 'ca' },
        providers: { files: { type: 'file', dir: '.' } },
        credentials: { rot: { provider: 'files', ref: 'key', hosts: [`localhost:${rot.port}`], inject: { type: 'header', header: 'X-Key' } } },
      },
    },
    { interceptor: createInterceptor },
  )
  const agent = new ProxyAgent({ uri: d.proxyUrl, requestTls: { ca: await readFile(path.join(rotDir, 'ca', 'ca.pem'), 'utf8') } })
  try {
    await writeFile(path.join(rotDir, 'key'), CANARY_NEW)
    const r = await request(`https://localhost:${rot.port}/rotated`, { dispatcher: agent, method: 'POST', body: '{"small":true}', headers: { 'content-type': 'application/json' } })
    assert.equal(r.statusCode, 200)
    await r.body.dump()
    assert.deepEqual(rot.received.map((x) => x.headers['x-key'] === CANARY_NEW), [false, true])
    assert.equal(rot.received[1]?.body.toString(), '{"small":true}')
  } finally {
    await agent.close()
    await d.close(2000)
    await rot.close()
    await rm(rotDir, { recursive: true, force: true })
  }
})

test('closing ends idle tunnels at once and a busy one right after its response', async () => {
  const idle = await handshake(await connect(`localhost:${up.port}`), { servername: 'localhost' })
  const busy = await handshake(await connect(`localhost:${up.port}`), { servername: 'localhost' })
  assert.ok(idle.ok && busy.ok)
  idle.socket.on('error', () => undefined)
  const idleClosed = new Promise<void>((r) => idle.socket.once('close', () => r()))
  up.handle((req, res) => setTimeout(() => res.end(JSON.stringify({ path: req.url })), 300))
  // No Connection: close from the client: latchkey ends the tunnel after this response by itself.
  const answer = exchange(busy.socket, `GET /slow HTTP/1.1\r\nHost: localhost:${up.port}\r\n\r\n`)
  await new Promise((r) => setTimeout(r, 100))
  const started = Date.now()
  // Daemon.close() must close the interceptor while the proxy drains (its tunnels are raw sockets the
  // proxy's http.Server no longer tracks); here both are called together, as the daemon should.
  await Promise.all([interceptor.close(3000), daemon.close(3000)])
  await idleClosed
  assert.match(await answer, /^HTTP\/1\.1 200[\s\S]*"path":"\/slow"/)
  assert.ok(Date.now() - started < 2500, `closed in ${Date.now() - started} ms`)
})
