import assert from 'node:assert/strict'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import type { Daemon } from '../../src/daemon.ts'
import { resolveServerLimits } from '../../src/proxy/server-limits.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const SLOWLORIS = 1_000

/** A connection to the proxy and everything it received until it closed. */
function connect(url: string): Promise<{ socket: net.Socket; received: () => string; closed: Promise<void> }> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname)
    let text = ''
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => (text += d))
    const closed = new Promise<void>((r) => socket.once('close', () => r()))
    socket.once('error', () => undefined)
    socket.once('connect', () => resolve({ socket, received: () => text, closed }))
    socket.once('error', reject)
  })
}

/** One complete request on an open connection; resolves with the status line. */
function ask(c: { socket: net.Socket; received: () => string }, path: string): Promise<string> {
  const before = c.received().length
  c.socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  return new Promise((resolve) => {
    const check = () => {
      const text = c.received().slice(before)
      if (/\r\n\r\n/.test(text)) {
        c.socket.off('data', check)
        resolve(text.split('\r\n')[0] ?? '')
      }
    }
    c.socket.on('data', check)
  })
}

describe('connection limits and timeouts of the proxy listener', () => {
  let up: Upstream
  before(async () => {
    up = await startUpstream()
  })
  after(async () => {
    await up.close()
  })

  test('1,000 slowloris connections are cut by the header timeout while a fresh request is served', async () => {
    const daemon = await startTestDaemon({
      config: { log: { level: 'warn' }, limits: { headersTimeout: '2s', maxConnections: SLOWLORIS + 50 }, routes: { up: { upstream: up.url } } },
    })
    try {
      const clients: Awaited<ReturnType<typeof connect>>[] = []
      for (let i = 0; i < SLOWLORIS; i++) {
        const c = await connect(daemon.proxyUrl)
        c.socket.write('GET /up/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ')
        clients.push(c)
      }
      // Drip one header byte per connection every 250 ms (bounded): activity that an idle timeout would not cut.
      let drips = 0
      let dripsDone = (): void => undefined
      const ranOut = new Promise<void>((r) => (dripsDone = r))
      const drip = setInterval(() => {
        if (++drips > 40) {
          clearInterval(drip)
          dripsDone()
        }
        for (const c of clients) if (!c.socket.destroyed) c.socket.write('a')
      }, 250)
      try {
        const fresh = await fetch(`${daemon.proxyUrl}/up/fresh`)
        assert.equal(fresh.status, 200)
        await fresh.text()
        const stillOpen = clients.filter((c) => !c.socket.destroyed).length
        assert.ok(stillOpen > 0, 'the fresh request was served while slowloris connections were held')
        await Promise.race([Promise.all(clients.map((c) => c.closed)), ranOut])
      } finally {
        clearInterval(drip)
      }
      const open = clients.filter((c) => !c.socket.destroyed)
      for (const c of open) c.socket.destroy()
      assert.equal(open.length, 0, 'every slowloris connection was cut before the drip loop ran out')
      const answered = clients.filter((c) => c.received().startsWith('HTTP/1.1 408') && c.received().includes('x-latchkey-error: request_timeout')).length
      assert.ok(answered > SLOWLORIS * 0.9, `${answered} of ${SLOWLORIS} got 408 Request Timeout before the close`)
      assert.ok(!up.received.some((r) => r.url === '/'), 'no slowloris request reached the upstream')
    } finally {
      await daemon.close()
    }
  })

  test('a connection past maxConnections is answered 503 too_many_connections and closed; a freed slot serves again', async () => {
    const daemon: Daemon = await startTestDaemon({ config: { log: { level: 'warn' }, limits: { maxConnections: 3 }, routes: { up: { upstream: up.url } } } })
    try {
      const held = await Promise.all([0, 1, 2].map(() => connect(daemon.proxyUrl)))
      // A served request proves the server accepted (and counts) each connection.
      for (const c of held) assert.match(await ask(c, '/up/held'), / 200 /)
      const refused = await connect(daemon.proxyUrl)
      await refused.closed
      assert.match(refused.received(), /^HTTP\/1\.1 503 /)
      assert.match(refused.received(), /x-latchkey-error: too_many_connections/)
      assert.match(refused.received(), /"error":"too_many_connections"/)

      held[0]?.socket.end()
      await held[0]?.closed
      // The server sees the close a moment after the client: retry a few times (bounded).
      let status = ''
      for (let i = 0; i < 50 && !status.includes(' 200 '); i++) {
        const c = await connect(daemon.proxyUrl)
        status = await Promise.race([ask(c, '/up/again'), c.closed.then(() => 'closed')])
        c.socket.destroy()
      }
      assert.match(status, / 200 /)
      for (const c of held) c.socket.destroy()
    } finally {
      await daemon.close()
    }
  })

  test('a connection that sends nothing is closed after the idle timeout', async () => {
    const daemon = await startTestDaemon({ config: { log: { level: 'warn' }, limits: { idleTimeout: '300ms' }, routes: { up: { upstream: up.url } } } })
    try {
      const silent = await connect(daemon.proxyUrl)
      await silent.closed
      assert.equal(silent.received(), '')
    } finally {
      await daemon.close()
    }
  })

  test('a kept-alive connection is served, then closed after the keep-alive timeout with no request on it', async () => {
    // Idle timeout far above the keep-alive one: the close below can only be the keep-alive timeout.
    const daemon = await startTestDaemon({ config: { log: { level: 'warn' }, limits: { keepAliveTimeout: '2s', idleTimeout: '60s' }, routes: { up: { upstream: up.url } } } })
    try {
      const c = await connect(daemon.proxyUrl)
      assert.match(await ask(c, '/up/one'), /^HTTP\/1\.1 200/)
      assert.match(await ask(c, '/up/two'), /^HTTP\/1\.1 200/, 'the connection is kept alive between requests')
      // Node announces the server's keep-alive timeout (whole seconds): the configured one, not its default of 5.
      assert.match(c.received(), /^keep-alive: timeout=2\r$/im)
      const waited = performance.now()
      await c.closed
      assert.ok(performance.now() - waited < 30_000, 'closed by the keep-alive timeout, not the idle one')
    } finally {
      await daemon.close()
    }
  })

  test('the defaults: 10 s for headers, 1024 connections, and an idle timeout above the upstream timeouts', () => {
    const d = resolveServerLimits({}, { connectTimeout: 10_000, requestTimeout: 60_000 })
    assert.equal(d.headersTimeoutMs, 10_000)
    assert.equal(d.maxConnections, 1024)
    assert.equal(d.idleTimeoutMs, 120_000)
    assert.equal(resolveServerLimits({}, { connectTimeout: 10_000, requestTimeout: 300_000 }).idleTimeoutMs, 315_000)
    assert.equal(resolveServerLimits({ headersTimeout: 400_000 }, { connectTimeout: 1, requestTimeout: 1 }).requestTimeoutMs, 400_000)
  })
})
