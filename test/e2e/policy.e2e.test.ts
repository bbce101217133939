/**
 * Least privilege through a real daemon: method/path rules on raw request-targets (the client
 * does no normalising of its own here), the proxy client token with curl and undici's
 * ProxyAgent, and the audit record written to the daemon's log stream.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { promisify } from 'node:util'
import { ProxyAgent, request } from 'undici'
import type { Daemon } from '../../src/daemon.ts'
import { fingerprint } from '../../src/providers/secret-value.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'
import { rawRequest, statusOf } from '../helpers/raw-http.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const run = promisify(execFile)

const RO_VALUE = 'canary-policy-ro-7f3a91c2'
const GUARDED_VALUE = 'canary-policy-guarded-0b8e44d1'
const PROXY_TOKEN = 'canary-policy-proxy-token-5d2c9e7a'
const QUERY_CANARY = 'canary-policy-query-93ab10fe'
const HEADER_CANARY = 'canary-policy-header-c41d7e02'
const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'

let dir: string
let ro: Upstream
let guarded: Upstream
let rot: Upstream
let rotValue = 'canary-policy-rot-0'
let daemon: Daemon
let strict: Daemon
let forward: ProxyAgent
const logs = captureLogs()
const strictLogs = captureLogs()

function auditLines(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{"audit":true'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}

/** Resolves once `check` holds (the record is written when the exchange ends, which may follow the reply). */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (check()) return
    await new Promise((r) => setTimeout(r, 5))
  }
  assert.fail(`timed out waiting for ${what}`)
}

/** The audit records written while `fn` runs (waiting for `count` of them). */
async function auditedBy(fn: () => Promise<unknown>, count = 1): Promise<Array<Record<string, unknown>>> {
  const start = auditLines(logs.text()).length
  await fn()
  await until(() => auditLines(logs.text()).length >= start + count, `${count} audit record(s)`)
  // One more turn: a second record for the same request would show up now.
  await new Promise((r) => setImmediate(r))
  return auditLines(logs.text()).slice(start)
}

const curlEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin' }

async function curl(args: string[]): Promise<{ status: number; headers: string; body: string }> {
  const out = await run('curl', ['-sS', '-D', '-', '--noproxy', '', ...args], { env: curlEnv })
  const text = out.stdout
  const statuses = [...text.matchAll(/^HTTP\/[\d.]+ (\d{3})/gm)].map((m) => Number(m[1]))
  const split = text.lastIndexOf('\r\n\r\n')
  return { status: statuses[statuses.length - 1] ?? 0, headers: text.slice(0, split), body: text.slice(split + 4) }
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-policy-'))
  ro = await startUpstream()
  guarded = await startUpstream()
  rot = await startUpstream()
  rot.requireHeader('x-rot', () => rotValue)
  await writeFile(path.join(dir, 'rot-token'), rotValue)
  const credentials = {
    ro: {
      provider: 'dev',
      ref: 'RO',
      hosts: [`localhost:${ro.port}`],
      insecure: true,
      inject: { type: 'header', header: 'X-Api-Key' },
      allow: [
        { methods: ['GET', 'HEAD'], paths: ['/api/**'] },
        { methods: ['POST'], paths: ['/api/*/search'] },
      ],
    },
    guarded: { provider: 'dev', ref: 'GUARDED', hosts: [`localhost:${guarded.port}`], insecure: true, inject: { type: 'bearer' }, requireProxyAuth: true },
    rot: { provider: 'files', ref: 'rot-token', hosts: [`localhost:${rot.port}`], insecure: true, inject: { type: 'header', header: 'X-Rot' } },
  }
  const common = {
    cache: { bustCooldown: '10ms', fetchAttempts: 1 },
    providers: { dev: { type: 'env' }, files: { type: 'file', dir: '.' } },
    credentials,
    routes: { ro: { upstream: `http://localhost:${ro.port}/base` } },
  }
  const env = { RO: RO_VALUE, GUARDED: GUARDED_VALUE, PROXY_TOKEN }
  daemon = await startTestDaemon({ baseDir: dir, env, logStream: logs.stream, config: { ...common, proxyAuth: { token: '${env:PROXY_TOKEN}', required: false } } })
  forward = new ProxyAgent(daemon.proxyUrl)
  strict = await startTestDaemon({ baseDir: dir, env, logStream: strictLogs.stream, config: { ...common, egress: 'passthrough', proxyAuth: { token: '${env:PROXY_TOKEN}' } } })
})

after(async () => {
  await forward?.close()
  await daemon?.close(2000)
  await strict?.close(2000)
  for (const u of [ro, guarded, rot]) await u?.close()
  await rm(dir, { recursive: true, force: true })
  // Nothing secret in any line, audit or log: values, the proxy token, a query string, other headers.
  assertNoCanary([logs.text(), strictLogs.text()], [RO_VALUE, GUARDED_VALUE, PROXY_TOKEN, rotValue])
  const audit = [logs.text(), strictLogs.text()].flatMap((t) => t.split('\n').filter((l) => l.includes('"audit":true')))
  assert.ok(audit.length > 0, 'the tests wrote audit records')
  assertNoCanary(audit, [QUERY_CANARY, HEADER_CANARY])
})

function rawGet(target: string, method = 'GET'): Promise<string> {
  return rawRequest(daemon.proxyUrl, `${method} ${target} HTTP/1.1\r\nHost: ${target.startsWith('/') ? 'latchkey' : `localhost:${ro.port}`}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`)
}

test('a raw forward-proxy request is matched and sent on its normalised path', async () => {
  const before = ro.received.length
  const raw = await rawGet(`http://localhost:${ro.port}/api/a%7Eb/%2e/./c%5b?q=%2E%2E`)
  assert.equal(statusOf(raw), 200)
  assert.deepEqual(
    ro.received.slice(before).map((r) => [r.url, r.headers['x-api-key'] === RO_VALUE]),
    [['/api/a~b/c%5B?q=%2E%2E', true]],
  )
})

test('dot-segments that leave the allowed subtree are refused, never resolved by the upstream', async () => {
  const before = ro.received.length
  for (const target of [`http://localhost:${ro.port}/api/%2e%2e/admin`, `http://localhost:${ro.port}/api/x/../../admin`, `http://localhost:${ro.port}/admin`]) {
    const raw = await rawGet(target)
    assert.equal(statusOf(raw), 403, target)
    assert.match(raw, /"error":"policy_denied"/)
  }
  // Climbing above the root cannot be normalised at all: 400, before any rule is looked at,
  // with one audit record naming the credential it was refused.
  const climbed = await auditedBy(async () => assert.equal(statusOf(await rawGet(`http://localhost:${ro.port}/api/../../etc`)), 400))
  assert.deepEqual(
    climbed.map((r) => [r.credential, r.status, r.outcome, r.code]),
    [['ro', 400, 'refused', 'bad_request']],
  )
  // An encoded slash is not a separator: `*` does not reach across it.
  assert.equal(statusOf(await rawGet(`http://localhost:${ro.port}/api/a%2Fb/search`, 'POST')), 403)
  assert.equal(statusOf(await rawGet(`http://localhost:${ro.port}/api/a/search`, 'POST')), 200)
  assert.equal(ro.received.length, before + 1, 'only the allowed request reached the upstream')
})

test('a route matches the path it sends upstream (the route base included)', async () => {
  const before = ro.received.length
  // The route sends /base/api/x: no rule allows it (rules are written for the upstream's paths).
  assert.equal(statusOf(await rawGet('/ro/api/x')), 403)
  assert.equal(ro.received.length, before)
})

test('a refusal writes exactly one audit record, with the credential, the rule outcome and no query', async () => {
  const records = await auditedBy(() => rawGet(`http://localhost:${ro.port}/admin/users?token=${QUERY_CANARY}`, 'DELETE'))
  assert.equal(records.length, 1)
  const r = records[0] as Record<string, unknown>
  assert.deepEqual(
    { credential: r.credential, provider: r.provider, fingerprint: r.fingerprint, host: r.host, port: r.port, method: r.method, path: r.path, rule: r.rule, status: r.status, outcome: r.outcome, code: r.code },
    { credential: 'ro', provider: 'dev', fingerprint: undefined, host: 'localhost', port: ro.port, method: 'DELETE', path: '/admin/users', rule: undefined, status: 403, outcome: 'refused', code: 'policy_denied' },
  )
})

test('an egress refusal writes one record naming the destination, without a credential or the query', async () => {
  const records = await auditedBy(() => rawRequest(daemon.proxyUrl, `GET http://127.0.0.2:9/x/./y?k=${QUERY_CANARY} HTTP/1.1\r\nHost: 127.0.0.2:9\r\nConnection: close\r\n\r\n`))
  assert.deepEqual(
    records.map((r) => [r.credential, r.host, r.port, r.method, r.path, r.status, r.outcome, r.code]),
    [[undefined, '127.0.0.2', 9, 'GET', '/x/y', 403, 'refused', 'egress_denied']],
  )
})

test('an injected request writes one record naming the value by fingerprint, with bytes and the trace context', async () => {
  const records = await auditedBy(() =>
    request(`http://localhost:${ro.port}/api/items?secret=${QUERY_CANARY}`, {
      dispatcher: forward,
      headers: { traceparent: TRACEPARENT, 'x-other': HEADER_CANARY, tracestate: HEADER_CANARY },
    }).then((r) => r.body.text()),
  )
  const injected = records.filter((r) => r.credential === 'ro')
  assert.equal(injected.length, 1)
  const r = injected[0] as Record<string, unknown>
  assert.equal(r.outcome, 'injected')
  assert.equal(r.fingerprint, fingerprint(RO_VALUE))
  assert.equal(r.path, '/api/items')
  assert.equal(r.rule, 0)
  assert.equal(r.status, 200)
  assert.equal(r.traceparent, TRACEPARENT)
  assert.ok((r.bytesOut as number) > 0)
})

test('a malformed traceparent is not copied into the record', async () => {
  const records = await auditedBy(() =>
    request(`http://localhost:${ro.port}/api/t`, { dispatcher: forward, headers: { traceparent: `00-${HEADER_CANARY}-01` } }).then((r) => r.body.text()),
  )
  assert.equal(records.length, 1)
  assert.equal((records[0] as Record<string, unknown>).traceparent, undefined)
})

test('a replay after a rotated secret writes exactly one record, naming the new value', async () => {
  const agent = new ProxyAgent(daemon.proxyUrl)
  const warm = await request(`http://localhost:${rot.port}/warm`, { dispatcher: agent })
  await warm.body.text()
  assert.equal(warm.statusCode, 200)
  rotValue = 'canary-policy-rot-1'
  await writeFile(path.join(dir, 'rot-token'), rotValue)
  await new Promise((r) => setTimeout(r, 15)) // bustCooldown
  const records = await auditedBy(async () => {
    const r = await request(`http://localhost:${rot.port}/after`, { dispatcher: agent })
    await r.body.text()
    assert.equal(r.statusCode, 200)
  })
  assert.deepEqual(
    records.map((r) => [r.credential, r.outcome, r.status, r.fingerprint]),
    [['rot', 'replayed', 200, fingerprint(rotValue)]],
  )
  await agent.close()
})

test('a credential with requireProxyAuth answers 407 without the token, and serves curl and undici with it', async () => {
  const url = `http://localhost:${guarded.port}/g`
  const before = guarded.received.length
  const denied = await curl(['-x', daemon.proxyUrl, url])
  assert.equal(denied.status, 407)
  assert.match(denied.headers, /^proxy-authenticate: Basic realm="latchkey", Bearer realm="latchkey"$/im)
  assert.match(denied.body, /"error":"proxy_auth_required"/)
  const wrong = await curl(['-x', daemon.proxyUrl.replace('http://', 'http://me:wrong-token-0123456789@'), url])
  assert.equal(wrong.status, 407)
  const ok = await curl(['-x', daemon.proxyUrl.replace('http://', `http://me:${PROXY_TOKEN}@`), url])
  assert.equal(ok.status, 200)
  for (const dispatcher of [new ProxyAgent({ uri: daemon.proxyUrl, token: `Bearer ${PROXY_TOKEN}` }), new ProxyAgent(daemon.proxyUrl.replace('http://', `http://me:${PROXY_TOKEN}@`))]) {
    const r = await request(url, { dispatcher })
    await r.body.text()
    assert.equal(r.statusCode, 200)
    await dispatcher.close()
  }
  const sent = guarded.received.slice(before)
  assert.equal(sent.length, 3, 'only the requests with the token reached the upstream')
  for (const s of sent) {
    assert.equal(s.headers['proxy-authorization'], undefined, 'Proxy-Authorization is never forwarded')
    assert.equal(s.headers.authorization, `Bearer ${GUARDED_VALUE}`)
  }
  // Other credentials do not ask for it while proxyAuth.required is false.
  assert.equal((await curl(['-x', daemon.proxyUrl, `http://localhost:${ro.port}/api/x`])).status, 200)
})

test('proxyAuth.required: every request (route, absolute-form, CONNECT) needs the token; inside a tunnel nothing more is asked', async () => {
  const withToken = strict.proxyUrl.replace('http://', `http://me:${PROXY_TOKEN}@`)
  assert.equal((await curl(['-x', strict.proxyUrl, `http://localhost:${ro.port}/api/x`])).status, 407)
  assert.equal((await curl(['-x', withToken, `http://localhost:${ro.port}/api/x`])).status, 200)
  // Passthrough and unknown routes too: a client without the token learns nothing.
  assert.equal((await curl(['-x', strict.proxyUrl, `http://127.0.0.1:${ro.port}/anything`])).status, 407)
  assert.equal((await curl([`${strict.proxyUrl}/no-such-route/x`])).status, 407)
  const route = await curl(['-H', `Proxy-Authorization: Bearer ${PROXY_TOKEN}`, `${strict.proxyUrl}/ro/x`])
  assert.equal(route.status, 403, 'with the token the route is served (and its rules apply)')
  const connect = await rawRequest(strict.proxyUrl, `CONNECT 127.0.0.1:${ro.port} HTTP/1.1\r\nHost: 127.0.0.1:${ro.port}\r\n\r\n`)
  assert.equal(statusOf(connect), 407)
  assert.match(connect, /proxy-authenticate: Basic realm="latchkey"/i)
  const before = ro.received.length
  // A blind tunnel with the token: the request inside it is the client's own (no Proxy-Authorization needed).
  const tunnelled = await curl(['-p', '-x', withToken, `http://127.0.0.1:${ro.port}/inside`])
  assert.equal(tunnelled.status, 200)
  assert.equal(ro.received.length, before + 1)
  const refusals = auditLines(strictLogs.text()).filter((r) => r.code === 'proxy_auth_required')
  assert.ok(refusals.length >= 4, 'each 407 has an audit record')
  assert.ok(refusals.some((r) => r.method === 'CONNECT' && r.port === ro.port))
})

test('/metrics counts uses and refusals per credential by outcome', async () => {
  const text = await daemon.metrics.registry.metrics()
  assert.match(text, /latchkey_credential_requests_total\{credential="ro",outcome="refused"\} [1-9]/)
  assert.match(text, /latchkey_credential_requests_total\{credential="ro",outcome="injected"\} [1-9]/)
  assert.match(text, /latchkey_credential_requests_total\{credential="rot",outcome="replayed"\} 1/)
  assert.match(text, /latchkey_credential_requests_total\{credential="guarded",outcome="refused"\} [1-9]/)
})

test('with audit off, refusals are still counted per credential (the metric does not depend on the sink) and no record is written', async () => {
  const quiet = captureLogs()
  const d = await startTestDaemon({
    baseDir: dir,
    env: { RO: RO_VALUE, GUARDED: GUARDED_VALUE, PROXY_TOKEN },
    logStream: quiet.stream,
    config: {
      audit: { enabled: false },
      providers: { dev: { type: 'env' } },
      proxyAuth: { token: '${env:PROXY_TOKEN}', required: false },
      credentials: {
        ro: { provider: 'dev', ref: 'RO', hosts: [`localhost:${ro.port}`], insecure: true, inject: { type: 'header', header: 'X-Api-Key' }, allow: [{ methods: ['GET'], paths: ['/api/**'] }] },
        guarded: { provider: 'dev', ref: 'GUARDED', hosts: [`localhost:${guarded.port}`], insecure: true, inject: { type: 'bearer' }, requireProxyAuth: true },
      },
    },
  })
  try {
    assert.equal((await curl(['-x', d.proxyUrl, `http://localhost:${guarded.port}/g`])).status, 407, 'refused at the edge')
    assert.equal((await curl(['-x', d.proxyUrl, '-X', 'DELETE', `http://localhost:${ro.port}/api/x`])).status, 403, 'refused by a rule')
    assert.equal((await curl(['-x', d.proxyUrl, `http://localhost:${ro.port}/api/x`])).status, 200)
    const text = await d.metrics.registry.metrics()
    assert.match(text, /latchkey_credential_requests_total\{credential="guarded",outcome="refused"\} 1/)
    assert.match(text, /latchkey_credential_requests_total\{credential="ro",outcome="refused"\} 1/)
    assert.match(text, /latchkey_credential_requests_total\{credential="ro",outcome="injected"\} 1/)
    assert.equal(auditLines(quiet.text()).length, 0)
  } finally {
    await d.close(2000)
  }
  assertNoCanary([quiet.text()], [RO_VALUE, GUARDED_VALUE, PROXY_TOKEN])
})

test('proxyAuth with interception: the CONNECT needs the token (407 without it); inside the intercepted tunnel requests get the credential and the token never reaches the upstream', async () => {
  const ca = await createTestCa()
  const caFile = path.join(dir, 'tls-upstream-ca.pem')
  await writeFile(caFile, ca.caPem)
  const tlsUp = await startUpstream(await ca.issue(['localhost']))
  const d = await startTestDaemon({
    baseDir: dir,
    env: { RO: RO_VALUE, PROXY_TOKEN },
    logStream: logs.stream,
    config: {
      upstream: { caFile },
      intercept: { enabled: true, caDir: 'ca-proxyauth' },
      providers: { dev: { type: 'env' } },
      proxyAuth: { token: '${env:PROXY_TOKEN}' },
      credentials: { tls: { provider: 'dev', ref: 'RO', hosts: [`localhost:${tlsUp.port}`], inject: { type: 'bearer' } } },
    },
  })
  const interceptCa = await readFile(path.join(dir, 'ca-proxyauth', 'ca.pem'), 'utf8')
  const url = `https://localhost:${tlsUp.port}/inside`
  const without = new ProxyAgent({ uri: d.proxyUrl, requestTls: { ca: interceptCa } })
  const withToken = new ProxyAgent({ uri: d.proxyUrl, token: `Bearer ${PROXY_TOKEN}`, requestTls: { ca: interceptCa } })
  try {
    await assert.rejects(request(url, { dispatcher: without }), (err: Error & { statusCode?: number; message: string }) => /407/.test(`${err.statusCode ?? ''} ${err.message}`), 'the CONNECT is refused with 407')
    assert.equal(tlsUp.received.length, 0)
    for (let i = 0; i < 2; i++) {
      const r = await request(url, { dispatcher: withToken })
      await r.body.dump()
      assert.equal(r.statusCode, 200)
    }
    assert.deepEqual(
      tlsUp.received.map((x) => [x.url, x.headers.authorization, x.headers['proxy-authorization']]),
      [
        ['/inside', `Bearer ${RO_VALUE}`, undefined],
        ['/inside', `Bearer ${RO_VALUE}`, undefined],
      ],
    )
  } finally {
    await without.close()
    await withToken.close()
    await d.close(2000)
    await tlsUp.close()
  }
})
