/**
 * An upstream that echoes the request's credential back (headers, status text, body; plain,
 * chunked, gzip) never gets it to the client: through a route, the forward proxy and the shim.
 */
import assert from 'node:assert/strict'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { after, before, describe, test } from 'node:test'
import { gzipSync } from 'node:zlib'
import { Agent, ProxyAgent, request } from 'undici'
import type { Daemon } from '../../src/daemon.ts'
import { createLatchkeyInterceptor, type LatchkeyInterceptor } from '../../src/shim/interceptor.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'
import { rawRequest, statusOf } from '../helpers/raw-http.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const CANARY = 'canary-echo+5e2a/91cf=q z'
const CANARY_HEADERS_ONLY = 'canary-echo-hdr-3b7d0c4e'

/** Echo the Authorization header back in every way an echo service or error page might. */
function echo(req: IncomingMessage, res: ServerResponse): void {
  const auth = String(req.headers.authorization ?? '')
  const value = auth.replace(/^Bearer /, '')
  const body = Buffer.from(JSON.stringify({ headers: req.headers, b64: Buffer.from(auth).toString('base64'), url: encodeURIComponent(value), form: new URLSearchParams({ t: value }).toString() }) + `\n${value}\n`)
  const headers = {
    'content-type': 'application/json',
    'x-echo-authorization': auth,
    'x-echo-b64': Buffer.from(value).toString('base64'),
    'set-cookie': [`s=${encodeURIComponent(value)}; Path=/`, 'plain=1'],
  }
  res.statusMessage = `Echo ${value}`
  if (req.url?.startsWith('/gzip')) {
    const gz = gzipSync(body)
    res.writeHead(200, { ...headers, 'content-encoding': 'gzip', 'content-length': gz.length })
    res.end(req.method === 'HEAD' ? undefined : gz)
  } else if (req.url?.startsWith('/compress')) {
    res.writeHead(200, { ...headers, 'content-encoding': 'compress' })
    res.end(body)
  } else if (req.url?.startsWith('/chunks')) {
    // Small writes a tick apart: the value crosses chunk boundaries on the way.
    res.writeHead(200, headers)
    let at = 0
    const next = () => {
      if (at >= body.length) return res.end()
      res.write(body.subarray(at, at + 7))
      at += 7
      setImmediate(next)
    }
    next()
  } else {
    res.writeHead(200, { ...headers, 'content-length': body.length })
    res.end(body)
  }
}

function headerText(headers: Record<string, string | string[] | undefined>): string {
  return Object.entries(headers).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : (v ?? '')}`).join('\n')
}

describe('a credential echoed back by the upstream', () => {
  let up: Upstream
  let daemon: Daemon
  let proxy: ProxyAgent
  let latchkey: LatchkeyInterceptor
  let shimBase: Agent
  const logs = captureLogs()

  const config = (port: number) => ({
    providers: { dev: { type: 'env' } },
    credentials: {
      echo: { provider: 'dev', ref: 'CANARY', hosts: [`127.0.0.1:${port}`], inject: { type: 'bearer' }, insecure: true, scrubResponses: true },
      headersOnly: { provider: 'dev', ref: 'CANARY_HEADERS_ONLY', hosts: [`localhost:${port}`], inject: { type: 'bearer' }, insecure: true },
    },
    routes: { echo: { upstream: `http://127.0.0.1:${port}` } },
  })
  const env = { CANARY, CANARY_HEADERS_ONLY }

  before(async () => {
    up = await startUpstream()
    up.handle(echo)
    daemon = await startTestDaemon({ env, logStream: logs.stream, config: config(up.port) })
    proxy = new ProxyAgent(daemon.proxyUrl)
    latchkey = createLatchkeyInterceptor({ ...config(up.port), log: { level: 'trace' } }, { env, logStream: logs.stream })
    await latchkey.ready
    shimBase = new Agent()
  })

  after(async () => {
    await shimBase?.close()
    await latchkey?.close()
    await proxy?.close()
    await daemon?.close()
    await up?.close()
    assertNoCanary(logs.lines(), [CANARY, CANARY_HEADERS_ONLY])
  })

  for (const path of ['/plain', '/chunks', '/gzip']) {
    test(`through a route (${path}), neither headers nor body hold the value, and the body is complete`, async () => {
      const res = await fetch(`${daemon.proxyUrl}/echo${path}`)
      assert.equal(res.status, 200)
      const body = Buffer.from(await res.arrayBuffer())
      const headers = Object.fromEntries(res.headers)
      assertNoCanary([headerText(headers), body.toString('latin1')], [CANARY])
      assert.equal(JSON.parse(body.toString().split('\n')[0] ?? '').headers.authorization.length, `Bearer ${CANARY}`.length, 'masked in place')
      if (headers['content-length'] !== undefined) assert.equal(Number(headers['content-length']), body.length)
      if (path === '/gzip') assert.equal(headers['content-encoding'], undefined, 'sent on decoded')
    })

    test(`through the forward proxy (${path}), neither headers nor body hold the value`, async () => {
      const res = await request(`http://127.0.0.1:${up.port}${path}`, { dispatcher: proxy })
      assert.equal(res.statusCode, 200)
      const body = await res.body.text()
      assertNoCanary([headerText(res.headers), body], [CANARY])
      assert.ok(body.includes('"authorization":"*'), 'the upstream did get the credential, and the body arrived decoded')
    })

    test(`through the shim (${path}), neither headers nor body hold the value`, async () => {
      const res = await request(`http://127.0.0.1:${up.port}${path}`, { dispatcher: shimBase.compose(latchkey) })
      assert.equal(res.statusCode, 200)
      const body = await res.body.text()
      assertNoCanary([headerText(res.headers), body, res.statusText], [CANARY])
      assert.ok(body.includes('"authorization":"*'), 'the upstream did get the credential')
    })
  }

  test('the status text is scrubbed too', async () => {
    const raw = await rawRequest(daemon.proxyUrl, 'GET /echo/plain HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
    assert.equal(statusOf(raw), 200)
    assertNoCanary(raw, [CANARY])
  })

  test('without scrubResponses the headers are still scrubbed, and the body is passed as it came', async () => {
    const res = await request(`http://localhost:${up.port}/plain`, { dispatcher: proxy })
    const body = await res.body.text()
    assertNoCanary(headerText(res.headers), [CANARY_HEADERS_ONLY])
    assert.ok(body.includes(CANARY_HEADERS_ONLY), 'bodies are scrubbed only on opt-in')
  })

  test('a body in an encoding latchkey cannot decode is refused (502), never passed unread', async () => {
    const viaProxy = await request(`http://127.0.0.1:${up.port}/compress`, { dispatcher: proxy })
    assert.equal(viaProxy.statusCode, 502)
    assert.equal(viaProxy.headers['x-latchkey-error'], 'upstream_error')
    assertNoCanary(await viaProxy.body.text(), [CANARY])
    await assert.rejects(request(`http://127.0.0.1:${up.port}/compress`, { dispatcher: shimBase.compose(latchkey) }), /Content-Encoding "compress"/)
  })

  test('a HEAD answer with a compressed representation passes without a body to decode', async () => {
    const res = await request(`http://127.0.0.1:${up.port}/gzip`, { method: 'HEAD', dispatcher: proxy })
    assert.equal(res.statusCode, 200)
    await res.body.dump()
    assertNoCanary(headerText(res.headers), [CANARY])
  })
})
