import assert from 'node:assert/strict'
import { execFile, spawnSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { promisify } from 'node:util'
import { ProxyAgent, request } from 'undici'
import type { Daemon } from '../../src/daemon.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'
import { rawRequest, statusOf } from '../helpers/raw-http.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

// Request-level behaviour of the proxy listener: uploads with Expect: 100-continue, duplicate
// Host headers, busts on 403 and on an unchanged value, and overwrite: false.
const CANARY_OLD = 'canary-http-old-6a1f0c3e'
const CANARY_NEW = 'canary-http-new-b83d2e71'
const CANARY_KEEP = 'canary-http-keep-0d4c9a52'

let dir: string
let up: Upstream
let daemon: Daemon
let proxy: ProxyAgent
const logs = captureLogs()

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-http-'))
  await writeFile(path.join(dir, 'key'), CANARY_OLD)
  up = await startUpstream()
  daemon = await startTestDaemon({
    baseDir: dir,
    env: { CANARY_KEEP },
    logStream: logs.stream,
    config: {
      cache: { bustCooldown: '50ms' },
      providers: { dev: { type: 'env' }, files: { type: 'file', dir: '.' } },
      credentials: {
        rotating: { provider: 'files', ref: 'key', hosts: [`127.0.0.1:${up.port}`], inject: { type: 'header', header: 'X-Api-Key' }, insecure: true },
        keep: { provider: 'dev', ref: 'CANARY_KEEP', hosts: [`localhost:${up.port}`], inject: { type: 'header', header: 'X-Api-Key', overwrite: false }, insecure: true },
      },
      routes: { up: { upstream: `http://127.0.0.1:${up.port}` } },
    },
  })
  proxy = new ProxyAgent(daemon.proxyUrl)
})

after(async () => {
  await proxy?.close()
  await daemon?.close()
  await up?.close()
  await rm(dir, { recursive: true, force: true })
})

const countBytes = () => up.handle((_req, res, body) => res.end(JSON.stringify({ bytes: body.length })))
const pastCooldown = () => new Promise((r) => setTimeout(r, 60))

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${daemon.adminUrl}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels))
  return Number(line?.split(' ').at(-1) ?? 0)
}

/**
 * Send headers with `Expect: 100-continue`, and the body only after the proxy's `100 Continue`
 * (as a strict client does); resolves with everything received once the server closes.
 */
function uploadWithExpect(head: string, body: Buffer, timeoutMs = 5000): Promise<{ gotContinue: boolean; raw: string }> {
  const u = new URL(daemon.proxyUrl)
  return new Promise((resolve, reject) => {
    let raw = ''
    let gotContinue = false
    const socket = net.connect(Number(u.port), u.hostname, () => socket.write(head))
    const timer = setTimeout(() => {
      socket.destroy()
      resolve({ gotContinue, raw })
    }, timeoutMs)
    socket.on('data', (c: Buffer) => {
      raw += c.toString('latin1')
      if (!gotContinue && /^HTTP\/1\.1 100 Continue\r\n\r\n/.test(raw)) {
        gotContinue = true
        socket.write(body)
      }
    })
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    socket.on('close', () => {
      clearTimeout(timer)
      resolve({ gotContinue, raw })
    })
  })
}

test('an upload with Expect: 100-continue gets its 100 from the proxy and its whole body upstream, forward and routed', async () => {
  countBytes()
  const body = Buffer.alloc(1536 * 1024, 'u')
  for (const [target, hostHeader] of [[`http://127.0.0.1:${up.port}/upload`, `127.0.0.1:${up.port}`], ['/up/upload', 'x']] as const) {
    const before = up.received.length
    const head = `POST ${target} HTTP/1.1\r\nHost: ${hostHeader}\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`
    const r = await uploadWithExpect(head, body)
    assert.ok(r.gotContinue, `the client got 100 Continue before sending its body (${target})`)
    const final = r.raw.slice(r.raw.indexOf('\r\n\r\n') + 4)
    assert.equal(statusOf(final), 200, `${target}: ${final.slice(0, 200)}`)
    assert.match(final, new RegExp(`"bytes":${body.length}`))
    assert.equal(up.received.length, before + 1)
    const got = up.received.at(-1)
    assert.equal(got?.headers.expect, undefined, 'expect is not forwarded (undici refuses it)')
    assert.equal(got?.headers['x-api-key'], CANARY_OLD)
  }
})

const curl = spawnSync('curl', ['--version']).status === 0
test('curl uploads of more than 1 MiB (which send Expect: 100-continue) go through the forward proxy and a route', { skip: curl ? false : 'curl is not installed on this machine' }, async () => {
  countBytes()
  const file = path.join(dir, 'upload.bin')
  await writeFile(file, Buffer.alloc(2 * 1024 * 1024 + 7, 'c'))
  const run = promisify(execFile)
  const env = { PATH: process.env.PATH ?? '', NO_PROXY: '' }
  for (const args of [['-x', daemon.proxyUrl, `http://127.0.0.1:${up.port}/curl`], [`${daemon.proxyUrl}/up/curl`]]) {
    const before = up.received.length
    // -v shows the interim response on stderr: the client really got its 100.
    const out = await run('curl', ['-sS', '-v', '--max-time', '20', '-w', ' %{http_code}', '--data-binary', `@${file}`, ...args], { env, maxBuffer: 4 * 1024 * 1024 })
    assert.match(out.stderr, /> Expect: 100-continue/i, 'curl asked for 100-continue')
    assert.match(out.stderr, /< HTTP\/1\.1 100 Continue/, 'and got it')
    assert.equal(out.stdout, `{"bytes":${2 * 1024 * 1024 + 7}} 200`)
    assert.equal(up.received.length, before + 1)
    assert.equal(up.received.at(-1)?.headers['x-api-key'], CANARY_OLD)
  }
})

test('a request with two Host headers is refused with 400 and nothing reaches the upstream', async () => {
  const before = up.received.length
  const forward = await rawRequest(daemon.proxyUrl, `GET http://127.0.0.1:${up.port}/dup HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\nHost: evil.example\r\nConnection: close\r\n\r\n`)
  assert.equal(statusOf(forward), 400)
  assert.match(forward, /x-latchkey-error: bad_request/i)
  assert.match(forward, /more than one Host header/)
  const routed = await rawRequest(daemon.proxyUrl, `GET /up/dup HTTP/1.1\r\nhost: a.example\r\nHOST: b.example\r\nConnection: close\r\n\r\n`)
  assert.equal(statusOf(routed), 400)
  const connect = await rawRequest(daemon.proxyUrl, `CONNECT 127.0.0.1:${up.port} HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\nHost: evil.example:443\r\n\r\n`, 1500)
  assert.equal(statusOf(connect), 400)
  assert.equal(up.received.length, before)
  // One Host is fine.
  const one = await rawRequest(daemon.proxyUrl, `GET /up/one HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
  assert.equal(statusOf(one), 200)
})

test('overwrite: false keeps a client-sent header and injects only when the client sent none', async () => {
  up.handle((_req, res) => res.end('ok'))
  const kept = await request(`http://localhost:${up.port}/own`, { dispatcher: proxy, headers: { 'x-api-key': 'client-own-value' } })
  await kept.body.dump()
  assert.equal(kept.statusCode, 200)
  assert.equal(up.received.at(-1)?.headers['x-api-key'], 'client-own-value')
  assert.equal(up.received.at(-1)?.rawHeaders.filter((h) => h.toLowerCase() === 'x-api-key').length, 1, 'one header, not two')
  const injected = await request(`http://localhost:${up.port}/none`, { dispatcher: proxy })
  await injected.body.dump()
  assert.equal(up.received.at(-1)?.headers['x-api-key'], CANARY_KEEP)
})

test('an upstream 403 (not only 401) after rotation busts the secret and replays with the new value', async () => {
  await writeFile(path.join(dir, 'key'), CANARY_NEW)
  up.handle((req, res) => {
    res.writeHead(req.headers['x-api-key'] === CANARY_NEW ? 200 : 403)
    res.end(req.headers['x-api-key'] === CANARY_NEW ? 'fresh' : 'forbidden')
  })
  const before = up.received.length
  const res = await request(`http://127.0.0.1:${up.port}/forbidden`, { dispatcher: proxy, method: 'PUT', body: 'payload' })
  assert.equal(res.statusCode, 200)
  assert.equal(await res.body.text(), 'fresh')
  const seen = up.received.slice(before)
  assert.deepEqual(seen.map((r) => r.headers['x-api-key']), [CANARY_OLD, CANARY_NEW])
  assert.equal(seen[1]?.body.toString(), 'payload')
})

test('when the refetched value is unchanged the upstream 401 reaches the client unchanged, without a replay', async () => {
  await pastCooldown()
  up.handle((_req, res) => {
    res.writeHead(401, { 'www-authenticate': 'Bearer realm="up"', 'x-upstream': 'yes' })
    res.end('{"error":"still no"}')
  })
  const unchanged = await metric('latchkey_busts_total', 'result="unchanged"')
  const replays = await metric('latchkey_replays_total', 'credential="rotating"')
  const before = up.received.length
  const res = await request(`http://127.0.0.1:${up.port}/denied`, { dispatcher: proxy, method: 'POST', body: 'small' })
  assert.equal(res.statusCode, 401)
  assert.equal(res.headers['www-authenticate'], 'Bearer realm="up"')
  assert.equal(res.headers['x-upstream'], 'yes')
  assert.equal(await res.body.text(), '{"error":"still no"}')
  assert.equal(up.received.length - before, 1, 'sent once')
  assert.equal(await metric('latchkey_busts_total', 'result="unchanged"'), unchanged + 1, 'the secret was refetched')
  assert.equal(await metric('latchkey_replays_total', 'credential="rotating"'), replays)
  up.handle((_req, res) => res.end('ok'))
})

test('no log line of these requests holds a canary', () => {
  assert.ok(logs.lines().length > 5)
  assertNoCanary(logs.lines(), [CANARY_OLD, CANARY_NEW, CANARY_KEEP])
})
