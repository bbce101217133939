import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { ProxyAgent, request } from 'undici'
import type { Daemon } from '../../src/daemon.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'
import { rawRequest, statusOf } from '../helpers/raw-http.ts'
import { createTestCa, type TestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const CANARY = 'egress-canary-secret-6b2f'
let ca: TestCa
let bound: Upstream
let other: Upstream
let otherTls: Upstream
let daemon: Daemon
const logs = captureLogs()

before(async () => {
  ca = await createTestCa()
  bound = await startUpstream()
  other = await startUpstream()
  otherTls = await startUpstream(await ca.issue(['localhost', '127.0.0.1']))
  daemon = await startTestDaemon({
    env: { TOKEN: CANARY },
    logStream: logs.stream,
    config: {
      egress: 'passthrough',
      providers: { dev: { type: 'env' } },
      credentials: { api: { provider: 'dev', ref: 'TOKEN', hosts: [`127.0.0.1:${bound.port}`], inject: { type: 'bearer' }, insecure: true } },
    },
  })
})

after(async () => {
  await daemon?.close()
  await Promise.all([bound?.close(), other?.close(), otherTls?.close()])
})

test('under egress: passthrough an unbound host is proxied without any credential', async () => {
  const agent = new ProxyAgent(daemon.proxyUrl)
  try {
    const r = await request(`${other.url}/free`, { dispatcher: agent })
    await r.body.dump()
    assert.equal(r.statusCode, 200)
    assert.equal(other.received.at(-1)?.headers.authorization, undefined)
    const b = await request(`${bound.url}/bound`, { dispatcher: agent })
    await b.body.dump()
    assert.equal(bound.received.at(-1)?.headers.authorization, `Bearer ${CANARY}`)
  } finally {
    await agent.close()
  }
})

test('under egress: passthrough CONNECT to an unbound host is a blind tunnel: TLS end to end with the upstream, nothing injected', async () => {
  const agent = new ProxyAgent({ uri: daemon.proxyUrl, requestTls: { ca: ca.caPem, servername: 'localhost' } })
  try {
    const r = await request(`https://localhost:${otherTls.port}/tunnel`, { dispatcher: agent })
    await r.body.dump()
    assert.equal(r.statusCode, 200)
    assert.equal(otherTls.received.at(-1)?.url, '/tunnel')
    assert.equal(otherTls.received.at(-1)?.headers.authorization, undefined)
  } finally {
    await agent.close()
  }
})

test('link-local and metadata addresses are refused under passthrough, by forward proxy and by CONNECT', async () => {
  const a = await rawRequest(daemon.proxyUrl, 'GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n')
  assert.equal(statusOf(a), 403)
  assert.match(a, /link_local_denied/)
  const b = await rawRequest(daemon.proxyUrl, 'CONNECT 169.254.169.254:443 HTTP/1.1\r\nHost: 169.254.169.254:443\r\n\r\n')
  assert.equal(statusOf(b), 403)
  assert.match(b, /link_local_denied/)
  const c = await rawRequest(daemon.proxyUrl, 'CONNECT [fe80::1]:443 HTTP/1.1\r\nHost: [fe80::1]:443\r\n\r\n')
  assert.equal(statusOf(c), 403)
})

test('no egress log line contains the canary', () => {
  assertNoCanary(logs.lines(), [CANARY])
})

test('closing the daemon ends open blind tunnels instead of waiting for them', async () => {
  // As before the shared helper: no wait for prefetch, the config's default log level.
  const d = await startTestDaemon({ logStream: captureLogs().stream, waitReady: false, config: { log: { level: 'info' }, egress: 'passthrough' } })
  const { connect } = await import('node:net')
  const u = new URL(d.proxyUrl)
  const socket = connect(Number(u.port), u.hostname)
  const established = new Promise<string>((resolve) => socket.once('data', (c) => resolve(c.toString())))
  socket.write(`CONNECT 127.0.0.1:${other.port} HTTP/1.1\r\nHost: 127.0.0.1:${other.port}\r\n\r\n`)
  assert.match(await established, /^HTTP\/1\.1 200/)
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  const t = performance.now()
  await d.close(30_000)
  await closed
  assert.ok(performance.now() - t < 5000, 'close did not wait for the tunnel')
})
