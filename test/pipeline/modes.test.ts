/**
 * One pipeline, four ways in: the same scenarios through a reverse route, the forward proxy,
 * an intercepted CONNECT tunnel and the in-process shim, each against real local HTTPS
 * upstreams. Every mode must show the same status, the same headers at the upstream, the same
 * `request` log record (outcome, code, status) and the same metric deltas.
 */
import assert from 'node:assert/strict'
import type { IncomingHttpHeaders } from 'node:http'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { rootCertificates } from 'node:tls'
import { Agent, ProxyAgent, request, type Dispatcher } from 'undici'
import type { Counter } from 'prom-client'
import type { Metrics } from '../../src/admin/metrics.ts'
import type { Daemon } from '../../src/daemon.ts'
import { createInterceptor } from '../../src/intercept/interceptor.ts'
import { createLatchkeyInterceptor, type LatchkeyInterceptor } from '../../src/shim/interceptor.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { assertNoCanary, captureLogs, type LogCapture } from '../helpers/log-capture.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const MODES = ['route', 'forward', 'intercept', 'shim'] as const
type Mode = (typeof MODES)[number]
type Name = 'main' | 'keep' | 'down' | 'ro' | 'echo'

const CANARY_KEEP = 'canary-modes-keep-51c0e8a2'
const CANARY_ECHO = 'canary-modes-echo-0d94b7e3'
/** Every value the rotating credential ever had (all scrubbed from every log line). */
const tokens: string[] = []
let token = ''

let dir: string
const ups = {} as Record<Name, Upstream>
let daemon: Daemon
let shim: LatchkeyInterceptor
const daemonLogs = captureLogs()
const shimLogs = captureLogs()
const dispatchers = {} as Record<Mode, Dispatcher>
/** The hanging request of the abort scenario: resolves when the upstream has it, and when its connection closed. */
let hanging: { arrived: () => void; closed: () => void } | undefined

/** Write a new value for `main` and make its upstream accept only that one. */
async function rotate(): Promise<void> {
  token = `canary-modes-${tokens.length}-${Math.random().toString(36).slice(2, 10)}`
  tokens.push(token)
  await writeFile(path.join(dir, 'main-token'), token)
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-modes-'))
  const ca = await createTestCa()
  await writeFile(path.join(dir, 'upstream-ca.pem'), ca.caPem)
  await rotate()
  const cert = await ca.issue(['localhost'])
  for (const n of ['main', 'keep', 'down', 'ro', 'echo'] as const) ups[n] = await startUpstream(cert)
  // A debug endpoint that reflects the credential it got: in a header, and in the body split
  // across two writes and base64-encoded.
  ups.echo.handle((req, res) => {
    const auth = String(req.headers.authorization)
    res.writeHead(200, { 'content-type': 'text/plain', 'x-echo': auth })
    const half = Math.floor(auth.length / 2)
    res.write(`you sent ${auth.slice(0, half)}`)
    setImmediate(() => res.end(`${auth.slice(half)} = ${Buffer.from(auth.slice('Bearer '.length)).toString('base64')}\n`))
  })
  ups.main.handle((req, res) => {
    if (req.url === '/hang') {
      hanging?.arrived()
      res.once('close', () => hanging?.closed())
      return
    }
    if (req.headers.authorization !== `Bearer ${token}`) {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' })
      res.end('{"error":"unauthorized"}')
      return
    }
    if (req.url === '/redirect') {
      res.writeHead(302, { location: `https://localhost:${ups.main.port}/elsewhere`, 'content-length': 0 })
      res.end()
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end('{"ok":true}')
  })
  const config = {
    log: { level: 'trace' },
    cache: { bustCooldown: '10ms', fetchAttempts: 1 },
    upstream: { caFile: 'upstream-ca.pem', retryBodyLimit: 64 },
    intercept: { enabled: true, caDir: 'ca' },
    providers: { dev: { type: 'env' }, files: { type: 'file', dir: '.' } },
    credentials: {
      main: { provider: 'files', ref: 'main-token', hosts: [`localhost:${ups.main.port}`], inject: { type: 'bearer' } },
      keep: { provider: 'dev', ref: 'KEEP', hosts: [`localhost:${ups.keep.port}`], inject: { type: 'header', header: 'X-Api-Key', overwrite: false } },
      down: { provider: 'files', ref: 'no-such-file', hosts: [`localhost:${ups.down.port}`], inject: { type: 'bearer' }, prefetch: false },
      // Read-only: GET under /api/ only.
      ro: { provider: 'dev', ref: 'KEEP', hosts: [`localhost:${ups.ro.port}`], inject: { type: 'header', header: 'X-Api-Key' }, allow: [{ methods: ['GET'], paths: ['/api/**'] }] },
      echo: { provider: 'dev', ref: 'ECHO', hosts: [`localhost:${ups.echo.port}`], inject: { type: 'bearer' }, scrubResponses: true },
    },
    routes: Object.fromEntries((['main', 'keep', 'down', 'ro', 'echo'] as const).map((n) => [n, { upstream: `https://localhost:${ups[n].port}` }])),
  }
  daemon = await startTestDaemon({ baseDir: dir, env: { KEEP: CANARY_KEEP, ECHO: CANARY_ECHO }, logStream: daemonLogs.stream, config }, { interceptor: createInterceptor })
  shim = createLatchkeyInterceptor(config, { env: { KEEP: CANARY_KEEP, ECHO: CANARY_ECHO }, baseDir: dir, logStream: shimLogs.stream })
  await shim.ready
  const interceptCa = await readFile(path.join(dir, 'ca', 'ca.pem'), 'utf8')
  dispatchers.route = new Agent()
  dispatchers.forward = new ProxyAgent(daemon.proxyUrl)
  dispatchers.intercept = new ProxyAgent({ uri: daemon.proxyUrl, requestTls: { ca: [...rootCertificates, interceptCa] } })
  dispatchers.shim = new Agent().compose(shim)
})

after(async () => {
  await Promise.all(Object.values(dispatchers).map((d) => d.close()))
  await shim?.close()
  await daemon?.close(2000)
  await Promise.all(Object.values(ups).map((u) => u.close()))
  await rm(dir, { recursive: true, force: true })
  assertNoCanary([daemonLogs.text(), shimLogs.text()], [CANARY_KEEP, CANARY_ECHO, ...tokens])
})

interface Call {
  name: Name
  path: string
  method?: Dispatcher.HttpMethod
  headers?: Record<string, string>
  body?: string
  signal?: AbortSignal
}

/** The URL a client of this mode uses for `call`. */
function urlOf(mode: Mode, call: Call): string {
  const port = ups[call.name].port
  if (mode === 'route') return `${daemon.proxyUrl}/${call.name}${call.path}`
  if (mode === 'forward') return `http://localhost:${port}${call.path}`
  return `https://localhost:${port}${call.path}`
}

interface Reply {
  status: number
  headers: IncomingHttpHeaders
}

/** A status, or (the shim has no HTTP answer of its own) the code of the error the application got. */
async function send(mode: Mode, call: Call): Promise<Reply | { error: string }> {
  try {
    const r = await request(urlOf(mode, call), { dispatcher: dispatchers[mode], method: call.method ?? 'GET', headers: call.headers, body: call.body, signal: call.signal })
    await r.body.text()
    return { status: r.statusCode, headers: r.headers }
  } catch (err) {
    const e = err as { code?: unknown; name: string }
    return { error: e.name === 'AbortError' ? e.name : typeof e.code === 'string' ? e.code : e.name }
  }
}

function metricsOf(mode: Mode): Metrics {
  return mode === 'shim' ? shim.broker.metrics : daemon.metrics
}

function logsOf(mode: Mode): LogCapture {
  return mode === 'shim' ? shimLogs : daemonLogs
}

/** The counters a request moves, as `name{labels}` → value; requests only for this mode. */
async function counters(mode: Mode): Promise<Map<string, number>> {
  const m = metricsOf(mode)
  const out = new Map<string, number>()
  const all: Array<[string, { get(): Promise<{ values: Array<{ labels: Record<string, string | number | undefined>; value: number }> }> }]> = [
    ['injections_total', m.registry.getSingleMetric('latchkey_injections_total') as Counter],
    ['replays_total', m.registry.getSingleMetric('latchkey_replays_total') as Counter],
    ['denials_total', m.registry.getSingleMetric('latchkey_denials_total') as Counter],
    ['busts_total', m.registry.getSingleMetric('latchkey_busts_total') as Counter],
    ['requests_total', m.registry.getSingleMetric('latchkey_requests_total') as Counter],
  ]
  for (const [name, c] of all) {
    for (const v of (await c.get()).values) {
      if (v.labels.mode !== undefined && v.labels.mode !== mode) continue
      const labels = Object.entries(v.labels).filter(([k]) => k !== 'mode').map(([k, l]) => `${k}=${l}`).join(',')
      out.set(`${name}{${labels}}`, v.value)
    }
  }
  return out
}

function delta(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const d: Record<string, number> = {}
  for (const [k, v] of after) if (v - (before.get(k) ?? 0) !== 0) d[k] = v - (before.get(k) ?? 0)
  return d
}

/** Resolves once `check` holds; re-checked whenever the event loop turns (the pipeline finishes on its own events). */
async function until(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 5))
  }
  assert.fail(`timed out waiting for ${what}`)
}

interface Observed {
  reply: Reply['status'] | string
  upstream: Array<string | undefined>
  record: { outcome: unknown; code: unknown; status: unknown; rule?: unknown; paths?: string[] }
  metrics: Record<string, number>
}

interface Scenario {
  title: string
  call: Call
  /** The upstream header whose values (one per upstream request) are compared. */
  header: string
  prepare?: (mode: Mode) => Promise<void>
  /** Drives the request instead of a plain send (the abort). */
  drive?: (mode: Mode, call: Call) => Promise<Reply | { error: string }>
  /** Waits for what happens after the reply (a bust's refetch) before metrics are read. */
  settle?: (mode: Mode) => Promise<void>
  expect: (mode: Mode) => Observed
}

/**
 * What the upstream got, with the rotating secret named by role: `current` (the value the
 * provider holds now) or `stale` (an older one still cached in that mode). Each mode has a
 * cache of its own (daemon, shim), so which older value that is differs between them.
 */
function asSeen(value: string | undefined): string | undefined {
  if (value === `Bearer ${token}`) return 'current'
  if (value !== undefined && tokens.some((t) => value === `Bearer ${t}`)) return 'stale'
  return value
}
/** This mode's cache holds the provider's value; then the provider gets a new one, so that cached value is stale. */
async function warmThenRotate(mode: Mode): Promise<void> {
  const r = await send(mode, { name: 'main', path: '/warm' })
  assert.ok('status' in r && r.status === 200, `${mode}: warm-up request`)
  await rotate()
}
const current = 'current'
const stale = 'stale'

const scenarios: Scenario[] = [
  {
    title: 'injection: the bound credential is sent as its header',
    call: { name: 'main', path: '/hello?q=1' },
    header: 'authorization',
    expect: () => ({
      reply: 200,
      upstream: [current],
      record: { outcome: 'injected', code: undefined, status: 200 },
      metrics: { 'injections_total{credential=main}': 1, 'requests_total{outcome=injected}': 1 },
    }),
  },
  {
    title: 'overwrite false: a header the client sent is kept and nothing is injected',
    call: { name: 'keep', path: '/', headers: { 'x-api-key': 'client-value' } },
    header: 'x-api-key',
    expect: () => ({
      reply: 200,
      upstream: ['client-value'],
      record: { outcome: 'client_header_kept', code: undefined, status: 200 },
      metrics: { 'requests_total{outcome=client_header_kept}': 1 },
    }),
  },
  {
    title: '401 with a rotated secret: bust, refetch, and one replay with the new value',
    call: { name: 'main', path: '/rotated' },
    header: 'authorization',
    prepare: warmThenRotate,
    expect: () => ({
      reply: 200,
      upstream: [stale, current],
      record: { outcome: 'replayed', code: undefined, status: 200 },
      metrics: { 'injections_total{credential=main}': 1, 'replays_total{credential=main}': 1, 'busts_total{credential=main,result=changed}': 1, 'requests_total{outcome=replayed}': 1 },
    }),
  },
  {
    title: 'a body over retryBodyLimit is sent once: the 401 reaches the client, the refetch serves the next request',
    call: { name: 'main', path: '/upload', method: 'POST', body: 'x'.repeat(100) },
    header: 'authorization',
    prepare: warmThenRotate,
    settle: (mode) => until(async () => ((await counters(mode)).get(BUSTS) ?? 0) > (bustBaseline.get(mode) ?? 0), 'the refetch after the bust'),
    expect: () => ({
      reply: 401,
      upstream: [stale],
      record: { outcome: 'injected', code: undefined, status: 401 },
      metrics: { 'injections_total{credential=main}': 1, 'busts_total{credential=main,result=changed}': 1, 'requests_total{outcome=injected}': 1 },
    }),
  },
  {
    title: 'provider down: secret_unavailable, and nothing reaches the upstream',
    call: { name: 'down', path: '/' },
    header: 'authorization',
    expect: (mode) => ({
      reply: mode === 'shim' ? 'secret_unavailable' : 503,
      upstream: [],
      record: { outcome: 'error', code: 'secret_unavailable', status: 503 },
      metrics: { 'denials_total{code=secret_unavailable}': 1, 'requests_total{outcome=error}': 1 },
    }),
  },
  {
    title: 'a client that aborts closes the upstream request and is logged as client_closed',
    call: { name: 'main', path: '/hang' },
    header: 'authorization',
    drive: async (mode, call) => {
      const controller = new AbortController()
      let arrived!: () => void
      let closed!: () => void
      const upstreamHas = new Promise<void>((r) => (arrived = r))
      const upstreamClosed = new Promise<void>((r) => (closed = r))
      hanging = { arrived, closed }
      const reply = send(mode, { ...call, signal: controller.signal })
      await upstreamHas
      controller.abort()
      await upstreamClosed
      hanging = undefined
      return reply
    },
    expect: () => ({
      reply: 'AbortError',
      upstream: [current],
      record: { outcome: 'error', code: 'client_closed', status: 0 },
      metrics: { 'injections_total{credential=main}': 1, 'requests_total{outcome=error}': 1 },
    }),
  },
  {
    title: 'a redirect is handed to the client, not followed',
    call: { name: 'main', path: '/redirect' },
    header: 'authorization',
    expect: () => ({
      reply: 302,
      upstream: [current],
      record: { outcome: 'injected', code: undefined, status: 302 },
      metrics: { 'injections_total{credential=main}': 1, 'requests_total{outcome=injected}': 1 },
    }),
  },
]

scenarios.push(
  {
    title: 'a method no rule allows is 403 policy_denied, and nothing reaches the upstream',
    call: { name: 'ro', path: '/api/items', method: 'POST', body: 'x' },
    header: 'x-api-key',
    expect: (mode) => ({
      reply: mode === 'shim' ? 'policy_denied' : 403,
      upstream: [],
      record: { outcome: 'refused', code: 'policy_denied', status: 403, rule: undefined, paths: [] },
      metrics: { 'denials_total{code=policy_denied}': 1, 'requests_total{outcome=refused}': 1 },
    }),
  },
  {
    title: 'a path outside every rule is 403 policy_denied, even when it only gets there through an encoded dot-segment',
    call: { name: 'ro', path: '/api/%2E%2E/admin' },
    header: 'x-api-key',
    expect: (mode) => ({
      reply: mode === 'shim' ? 'policy_denied' : 403,
      upstream: [],
      record: { outcome: 'refused', code: 'policy_denied', status: 403, rule: undefined, paths: [] },
      metrics: { 'denials_total{code=policy_denied}': 1, 'requests_total{outcome=refused}': 1 },
    }),
  },
  {
    title: 'an allowed request is sent with the normalised path it was matched on, and the query as it came',
    call: { name: 'ro', path: '/api/a%7Eb/%2e/c%5bd?q=%2E%2E&x' },
    header: 'x-api-key',
    expect: () => ({
      reply: 200,
      upstream: [CANARY_KEEP],
      record: { outcome: 'injected', code: undefined, status: 200, rule: 0, paths: ['/api/a~b/c%5Bd?q=%2E%2E&x'] },
      metrics: { 'injections_total{credential=ro}': 1, 'requests_total{outcome=injected}': 1 },
    }),
  },
)

const BUSTS = 'busts_total{credential=main,result=changed}'
/** Busts already counted per mode before the current scenario (see `settle`). */
const bustBaseline = new Map<Mode, number>()

for (const s of scenarios) {
  test(`the same in every mode — ${s.title}`, async () => {
    const seen = new Map<Mode, Observed>()
    for (const mode of MODES) {
      await s.prepare?.(mode)
      // Busts of one credential are at least bustCooldown apart.
      await new Promise((r) => setTimeout(r, 15))
      const up = ups[s.call.name]
      const before = await counters(mode)
      bustBaseline.set(mode, before.get(BUSTS) ?? 0)
      const receivedBefore = up.received.length
      const logStart = logsOf(mode).lines().length
      const reply = await (s.drive ?? send)(mode, s.call)
      // The record is written when the exchange ends, which may follow the client's reply by a turn.
      await until(() => logsOf(mode).records().slice(logStart).some((l) => l.event === 'request' && l.mode === mode), 'the request log record')
      await s.settle?.(mode)
      const record = logsOf(mode).records().slice(logStart).filter((l) => l.event === 'request' && l.mode === mode)
      assert.equal(record.length, 1, `${mode}: one request record`)
      const r = record[0] as Record<string, unknown>
      const observed: Observed = {
        reply: 'status' in reply ? reply.status : reply.error,
        upstream: up.received.slice(receivedBefore).map((x) => asSeen(x.headers[s.header] as string | undefined)),
        record: { outcome: r.outcome, code: r.code, status: r.status, ...(s.call.name === 'ro' ? { rule: r.rule, paths: up.received.slice(receivedBefore).map((x) => x.url) } : {}) },
        metrics: delta(before, await counters(mode)),
      }
      if ('status' in reply && reply.status === 302) assert.equal(reply.headers.location, `https://localhost:${ups.main.port}/elsewhere`, `${mode}: the Location is passed on`)
      assert.deepEqual(observed, s.expect(mode), mode)
      seen.set(mode, observed)
    }
    // A rotation leaves the other cache (daemon or shim) with an older value: start the next scenario from the provider's.
    if (s.prepare) {
      daemon.cache.clear()
      shim.broker.cache.clear()
    }
    // Beyond the expectation: the modes agree with each other, field by field.
    const route = seen.get('route') as Observed
    for (const mode of MODES) {
      const o = seen.get(mode) as Observed
      assert.deepEqual({ ...o, reply: undefined, upstream: o.upstream.length }, { ...route, reply: undefined, upstream: route.upstream.length }, `${mode} and route agree`)
    }
  })
}

test('an upstream that echoes the credential: no form of it reaches the client in any mode (headers, a body split across writes, base64), and the daemon audits each use', async () => {
  for (const mode of MODES) {
    const auditStart = daemonLogs.lines().length
    const r = await request(urlOf(mode, { name: 'echo', path: '/debug?x=1' }), { dispatcher: dispatchers[mode] })
    const body = await r.body.text()
    assert.equal(r.statusCode, 200, mode)
    const seen = [JSON.stringify(r.headers), body]
    assertNoCanary(seen, [CANARY_ECHO])
    assert.match(body, /^you sent \*{33} = \*+\n$/, `${mode}: masked byte for byte: ${JSON.stringify(body)}`)
    assert.equal(ups.echo.received.at(-1)?.headers.authorization, `Bearer ${CANARY_ECHO}`, `${mode}: the upstream got the credential`)
    if (mode === 'shim') continue
    // One audit record per use, naming the value by fingerprint only.
    await until(() => daemonLogs.lines().slice(auditStart).some((l) => l.startsWith('{"audit":true') && l.includes('"credential":"echo"')), `${mode}: the audit record`)
    const records = daemonLogs.lines().slice(auditStart).filter((l) => l.startsWith('{"audit":true')).map((l) => JSON.parse(l) as Record<string, unknown>)
    assert.deepEqual(
      records.map((x) => [x.credential, x.method, x.path, x.status, x.outcome, typeof x.fingerprint]),
      [['echo', 'GET', '/debug', 200, 'injected', 'string']],
      mode,
    )
  }
})
