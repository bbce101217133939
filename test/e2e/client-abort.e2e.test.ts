/**
 * A client that goes away while latchkey still waits for the upstream's response headers:
 * the upstream request must be aborted then, not left open until requestTimeout (which here
 * is long, so only the abort can end it), and shutdown must not wait for it.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import http, { type IncomingMessage } from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { after, before, test } from 'node:test'
import type { Daemon } from '../../src/daemon.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'
import { startVaultServer, type VaultServer } from '../servers/vault-server.ts'

const CANARY = 'client-abort-canary-7d21e9'
const SLOW_CANARY = 'client-abort-slow-vault-canary-3b80'
const VAULT_LATENCY_MS = 1_500
const BOUND_MS = 5_000
let upstream: http.Server
let port: number
let daemon: Daemon
let vault: VaultServer
let dir: string
/** Upstream requests that arrived, and whether each one's connection was closed by latchkey. */
const arrived: { req: IncomingMessage; closed: Promise<void> }[] = []
const logs = captureLogs()

before(async () => {
  // Never answers: only latchkey aborting the request ends it before requestTimeout.
  upstream = http.createServer((req) => {
    arrived.push({ req, closed: new Promise((r) => req.socket.once('close', () => r())) })
  })
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
  port = (upstream.address() as AddressInfo).port
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-abort-'))
  vault = await startVaultServer()
  vault.setSecret('secret/slow', { token: SLOW_CANARY })
  vault.setLatency(VAULT_LATENCY_MS)
  daemon = await startTestDaemon({
    baseDir: dir,
    env: { TOKEN: CANARY },
    logStream: logs.stream,
    config: {
      upstream: { requestTimeout: '60s' },
      providers: { dev: { type: 'env' }, vault: { type: 'vault', address: vault.url, auth: { method: 'token', token: vault.rootToken } } },
      credentials: {
        hung: { provider: 'dev', ref: 'TOKEN', hosts: [`127.0.0.1:${port}`], inject: { type: 'bearer' }, insecure: true },
        // Same upstream under another name; its secret comes from a Vault that answers slowly.
        slow: { provider: 'vault', ref: 'secret/data/slow', field: 'token', hosts: [`localhost:${port}`], inject: { type: 'bearer' }, insecure: true, prefetch: false },
      },
      routes: { hung: { upstream: `http://127.0.0.1:${port}` }, slow: { upstream: `http://localhost:${port}` } },
    },
  })
})

after(async () => {
  await daemon?.close(1_000)
  await vault?.close()
  await rm(dir, { recursive: true, force: true })
  upstream?.closeAllConnections()
  await new Promise((r) => upstream?.close(r))
})

/** Sends one request over a raw socket, waits until the upstream has it, then drops the client connection. */
async function sendAndLeave(target: string, request: string): Promise<{ closed: Promise<void> }> {
  const before = arrived.length
  const socket = net.connect(new URL(target).port === '' ? 80 : Number(new URL(target).port), '127.0.0.1')
  socket.on('error', () => undefined)
  await new Promise<void>((r) => socket.once('connect', () => r()))
  socket.write(request)
  const deadline = Date.now() + BOUND_MS
  while (arrived.length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
  const got = arrived[before]
  assert.ok(got, 'the upstream received the request')
  assert.equal(got.req.headers.authorization, `Bearer ${CANARY}`)
  socket.destroy()
  return got
}

function within(p: Promise<void>, ms: number, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<void>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms)
    }),
  ])
}

test('a client that leaves a route request before the upstream answers gets its upstream request aborted', async () => {
  const got = await sendAndLeave(daemon.proxyUrl, `GET /hung/slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  await within(got.closed, BOUND_MS, 'closing the upstream connection')
})

test('a client that leaves a forward-proxy request before the upstream answers gets its upstream request aborted', async () => {
  const got = await sendAndLeave(daemon.proxyUrl, `GET http://127.0.0.1:${port}/slow HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`)
  await within(got.closed, BOUND_MS, 'closing the upstream connection')
})

test('a client that leaves while its secret is still being fetched gets nothing sent upstream', async () => {
  const before = arrived.length
  const socket = net.connect(new URL(daemon.proxyUrl).port === '' ? 80 : Number(new URL(daemon.proxyUrl).port), '127.0.0.1')
  socket.on('error', () => undefined)
  await new Promise<void>((r) => socket.once('connect', () => r()))
  socket.write(`GET /slow/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  await new Promise((r) => setTimeout(r, 200))
  socket.destroy()
  // Past the Vault's latency: the secret has arrived by now, and the request must not have been sent.
  const deadline = Date.now() + BOUND_MS
  while (Date.now() < deadline && !logs.records().some((l) => l.event === 'request' && l.credential === 'slow')) await new Promise((r) => setTimeout(r, 20))
  assert.equal(arrived.length, before, 'the upstream received nothing')
})

test('the abandoned requests are logged as client_closed and no log line holds a secret', () => {
  const lines = logs.records().filter((l) => l.event === 'request' && (l.credential === 'hung' || l.credential === 'slow'))
  assert.equal(lines.length, 3)
  for (const l of lines) assert.equal(l.code, 'client_closed')
  assertNoCanary(logs.text(), [CANARY, SLOW_CANARY])
})
