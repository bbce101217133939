import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Daemon } from '../../src/daemon.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'
import { rawRequest, statusOf } from '../helpers/raw-http.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const CANARY = 'canary-host-port-6b0d2e91'
const logs = captureLogs()
let plain: Upstream
let daemon: Daemon

before(async () => {
  plain = await startUpstream()
  daemon = await startTestDaemon({
    env: { CANARY },
    logStream: logs.stream,
    config: {
      egress: 'deny',
      providers: { dev: { type: 'env' } },
      credentials: { key: { provider: 'dev', ref: 'CANARY', hosts: [`127.0.0.1:${plain.port}`], inject: { type: 'header', header: 'X-Api-Key' }, insecure: true } },
    },
  })
})
after(async () => {
  await daemon?.close()
  await plain?.close()
})

const get = (uriAuthority: string, hostHeader: string, path = '/x') => rawRequest(daemon.proxyUrl, `GET http://${uriAuthority}${path} HTTP/1.1\r\nHost: ${hostHeader}\r\nConnection: close\r\n\r\n`)

test('an empty port in both the URI and the Host header is the default port, not a host_mismatch', async () => {
  // Nothing is bound to port 80 and egress is deny: the answer must be egress_denied for 127.0.0.1:80.
  const r = await get('127.0.0.1:', '127.0.0.1:')
  assert.match(r, /x-latchkey-error: egress_denied/i)
  assert.match(r, /127\.0\.0\.1:80 /)
  assert.match(await get('127.0.0.1', '127.0.0.1:'), /x-latchkey-error: egress_denied/i)
})

test('a zero-padded port written the same in the URI and the Host header reaches the bound upstream with its credential', async () => {
  const r = await get(`127.0.0.1:000${plain.port}`, `127.0.0.1:000${plain.port}`, '/padded')
  assert.equal(statusOf(r), 200)
  const seen = plain.received.at(-1)
  assert.equal(seen?.url, '/padded')
  assert.equal(seen?.headers['x-api-key'], CANARY)
  // Padding on one side only is the same destination too; another port is not.
  assert.equal(statusOf(await get(`127.0.0.1:${plain.port}`, `127.0.0.1:0${plain.port}`)), 200)
  assert.match(await get(`127.0.0.1:000${plain.port}`, `127.0.0.1:000${plain.port + 1}`), /x-latchkey-error: host_mismatch/i)
  assert.match(await get(`127.0.0.1:${plain.port}`, '127.0.0.1:000'), /x-latchkey-error: host_mismatch/i)
})

test('no log line holds the credential', () => {
  assertNoCanary(logs.text(), [CANARY])
})
