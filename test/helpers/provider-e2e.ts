import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import type { Daemon } from '../../src/daemon.ts'
import { exitedWithin, startBin } from './child.ts'
import { startTestDaemon } from './daemon.ts'
import { assertNoCanary, captureLogs, type LogCapture } from './log-capture.ts'
import { startUpstream, type Upstream } from './upstream.ts'

/**
 * The end-to-end suite every secret-manager provider runs: a daemon in front of a recording
 * upstream, fed by the provider's local fake server. Two credentials are configured:
 * - `app` (route `up`, upstream `127.0.0.1`): a bearer token with a 1 h TTL, used for
 *   caching, rotation and throttling;
 * - `flaky` (route `flaky`, upstream `localhost`): an `X-Api-Key` with a 300 ms TTL, used
 *   for stale serving within `maxStale` (1.5 s).
 * The upstream accepts only the current token (as a real API does after a rotation) and the key.
 */

/** The values the fake provider serves; planted as canaries that no log line may hold. */
export interface ProviderCanaries {
  /** The `app` token before the rotation. */
  first: string
  /** The `app` token after the rotation. */
  second: string
  /** The `flaky` API key. */
  key: string
}

/** What one provider's file adds to the shared daemon config. */
export interface ProviderE2eSetup {
  /** The `providers.<name>` block. */
  provider: Record<string, unknown>
  /** Ref (and `field`, if the secret is a map) of the `app` credential. */
  app: { ref: string; field?: string }
  /** Ref (and `field`) of the `flaky` credential. */
  flaky: { ref: string; field?: string }
  /** `cache.fetchAttempts` (2 unless the provider's throttling needs a third). */
  fetchAttempts: number
  /** The daemon's env record. */
  env?: Record<string, string>
}

export interface ProviderE2e {
  /** Available once the file's `before` has run (as are `up` and `logs`' content). */
  readonly daemon: Daemon
  readonly up: Upstream
  readonly logs: LogCapture
  /** Name of the provider in the config (as in metrics labels). */
  readonly provider: string
  /** The daemon's `baseDir` (the provider's files are in it). */
  readonly dir: string
  /** What the provider's `setup` returned. */
  readonly setup: ProviderE2eSetup
  /** GET through the daemon's reverse proxy: `get('up', '/api')`. */
  get(route: 'up' | 'flaky', p?: string): Promise<{ status: number; body: string }>
  /** From now on the upstream accepts only the rotated token. */
  acceptSecond(): void
}

/** The daemon config both the in-process daemon and the bin case run: trace logging, ports 0, upstream on `port`. */
function daemonConfig(name: string, s: ProviderE2eSetup, port: number): Record<string, unknown> {
  return {
    listen: '127.0.0.1:0',
    admin: { listen: '127.0.0.1:0' },
    log: { level: 'trace' },
    cache: { ttl: '1h', maxStale: '1500ms', bustCooldown: '50ms', fetchTimeout: '2s', fetchAttempts: s.fetchAttempts },
    providers: { [name]: s.provider },
    credentials: {
      app: { provider: name, ...s.app, hosts: [`127.0.0.1:${port}`], inject: { type: 'bearer' }, insecure: true },
      flaky: { provider: name, ...s.flaky, hosts: [`localhost:${port}`], inject: { type: 'header', header: 'X-Api-Key' }, insecure: true, ttl: '300ms' },
    },
    routes: {
      up: { upstream: `http://127.0.0.1:${port}` },
      flaky: { upstream: `http://localhost:${port}` },
    },
  }
}

/** An upstream that accepts only `token()` as the bearer on 127.0.0.1 and only `key` as the API key on localhost. */
async function recordingUpstream(token: () => string, key: string): Promise<Upstream> {
  const up = await startUpstream()
  up.handle((req, res) => {
    const ok = req.headers.host?.startsWith('localhost') ? req.headers['x-api-key'] === key : req.headers.authorization === `Bearer ${token()}`
    res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' })
    res.end(ok ? '{"ok":true}' : '{"error":"unauthorized"}')
  })
  return up
}

/**
 * Registers `before`/`after` hooks that start (and stop) the upstream and the daemon.
 * `setup(dir)` starts the fake provider (`dir` is a fresh temporary directory, the daemon's
 * `baseDir`, removed afterwards) and returns its part of the config; `teardown` stops it.
 */
export function providerE2e(name: string, canaries: ProviderCanaries, setup: (dir: string) => Promise<ProviderE2eSetup>, teardown: () => Promise<void>): ProviderE2e {
  const logs = captureLogs()
  let current = canaries.first
  let dir: string | undefined
  let up: Upstream | undefined
  let daemon: Daemon | undefined
  let setupResult: ProviderE2eSetup | undefined

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), `latchkey-${name}-e2e-`))
    const s = await setup(dir)
    up = await recordingUpstream(() => current, canaries.key)
    setupResult = s
    daemon = await startTestDaemon({ baseDir: dir, env: s.env, logStream: logs.stream, config: daemonConfig(name, s, up.port) })
  })

  after(async () => {
    await daemon?.close()
    await teardown()
    await up?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  const started = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`${what} is not started (used outside a test?)`)
    return v
  }
  return {
    get daemon() {
      return started(daemon, 'the daemon')
    },
    get up() {
      return started(up, 'the upstream')
    },
    get dir() {
      return started(dir, 'the temporary directory')
    },
    get setup() {
      return started(setupResult, 'the provider set-up')
    },
    logs,
    provider: name,
    async get(route, p = '/x') {
      const res = await request(`${started(daemon, 'the daemon').proxyUrl}/${route}${p}`)
      return { status: res.statusCode, body: await res.body.text() }
    },
    acceptSecond() {
      current = canaries.second
    },
  }
}

/** How the shared cases drive one provider's fake server. */
export interface ProviderScenarioHooks {
  canaries: ProviderCanaries
  /** Calls the fake provider has served for the `app` secret so far. */
  appCalls(): number
  /** Calls for the `flaky` secret; when given, the stale case also asserts the provider was asked again. */
  flakyCalls?(): number
  /** Store `second` as the new value of the `app` secret. */
  rotate(second: string): void
  /** Make the `flaky` secret's reads fail (for longer than the test runs) until `recover()`. */
  failFlaky(): void
  recover(): void
  /** Throttle the next read of the `app` secret once. */
  throttleApp(): void
  /** The fake server counts the throttled call as a call, so the retry shows as a second one. */
  throttledCallCounted?: boolean
  /** Name of the failure case: `a failing Vault (503 sealed) is survived ...`. */
  failureTest: string
  /** Name of the throttling case. */
  throttleTest: string
}

/**
 * Registers the cases every provider shares, in this order: one provider call for many
 * requests; rotation + upstream 401 costs exactly one extra call; provider failure survived
 * within `maxStale`, then 503, then recovery; throttling retried and counted. They assume
 * the `app` secret was read once (at prefetch) and nothing else ran before them.
 */
/** Polls `/readyz` until it answers 200; fails with its last answer after `ms`. */
async function untilReady(adminUrl: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  let last = ''
  while (Date.now() < deadline) {
    const r = await request(`${adminUrl}/readyz`)
    last = await r.body.text()
    if (r.statusCode === 200) return
    await sleep(50)
  }
  assert.fail(`not ready again within ${ms} ms: ${last}`)
}

export function testSharedProviderScenarios(e2e: ProviderE2e, hooks: ProviderScenarioHooks): void {
  const { canaries } = hooks

  test('many requests cost one provider call', async () => {
    const before = hooks.appCalls()
    assert.equal(before, 1, 'prefetched once')
    const results = await Promise.all(Array.from({ length: 25 }, (_, i) => e2e.get('up', `/item/${i}`)))
    assert.ok(results.every((r) => r.status === 200))
    assert.equal(hooks.appCalls(), before)
  })

  test('after a rotation the upstream 401 costs exactly one extra provider call and the request succeeds', async () => {
    const before = hooks.appCalls()
    hooks.rotate(canaries.second)
    e2e.acceptSecond()
    const r = await e2e.get('up', '/after-rotation')
    assert.equal(r.status, 200, r.body)
    assert.equal(hooks.appCalls() - before, 1)
    assert.deepEqual(
      e2e.up.received.slice(-2).map((x) => x.headers.authorization),
      [`Bearer ${canaries.first}`, `Bearer ${canaries.second}`],
    )
    // And the new value is cached.
    assert.equal((await e2e.get('up', '/again')).status, 200)
    assert.equal(hooks.appCalls() - before, 1)
  })

  test(hooks.failureTest, async () => {
    assert.equal((await e2e.get('flaky')).status, 200)
    const flakyBefore = hooks.flakyCalls?.()
    hooks.failFlaky()
    await sleep(400) // past the 300 ms TTL: the entry is stale
    const stale = await e2e.get('flaky', '/stale')
    assert.equal(stale.status, 200, 'served the stale value while the provider fails')
    assert.equal(e2e.up.received.at(-1)?.headers['x-api-key'], canaries.key)
    if (flakyBefore !== undefined) assert.ok(hooks.flakyCalls!() > flakyBefore, 'the provider was asked again while the entry was stale')
    await sleep(1_700) // past maxStale
    const failed = await e2e.get('flaky', '/too-stale')
    assert.equal(failed.status, 503, failed.body)
    assert.match(failed.body, /secret_unavailable/)
    hooks.recover()
    // The background retry brings it back, when its backoff (full jitter from a 1 s base) says:
    // readiness turns 200 the moment it succeeds, so wait for that rather than a fixed time.
    await untilReady(e2e.daemon.adminUrl, 20_000)
    const back = await e2e.get('flaky', '/recovered')
    assert.equal(back.status, 200, back.body)
  })

  test(hooks.throttleTest, async () => {
    hooks.throttleApp()
    e2e.daemon.cache.clear()
    const before = hooks.appCalls()
    const r = await e2e.get('up', '/after-throttle')
    assert.equal(r.status, 200, r.body)
    if (hooks.throttledCallCounted) assert.equal(hooks.appCalls() - before, 2, 'one throttled call, one retry')
    const metrics = await (await request(`${e2e.daemon.adminUrl}/metrics`)).body.text()
    assert.match(metrics, new RegExp(`latchkey_provider_throttled_total\\{provider="${e2e.provider}"\\} 1`))
  })
}

/**
 * Registers the last case of a provider's file: no canary (nor `more()`, e.g. the provider's
 * own tokens, read when the case runs) appears in any trace-level log line, in any encoding
 * `assertNoCanary` knows; every line is JSON; and, if given, `logged` appears in some line.
 */
export function testNoCanaryInLogs(e2e: ProviderE2e, name: string, canaries: ProviderCanaries, opts: { more?: () => string[]; logged?: { text: string; why: string } } = {}): void {
  test(name, () => {
    const lines = e2e.logs.lines()
    assert.ok(lines.length > 20, 'trace logging captured lines')
    e2e.logs.records()
    assertNoCanary(lines, [canaries.first, canaries.second, canaries.key, ...(opts.more?.() ?? [])])
    if (opts.logged) {
      const { text, why } = opts.logged
      assert.ok(lines.some((l) => l.includes(text)), why)
    }
  })
}

/** What the bin case needs beyond the shared hooks. */
export interface BinCaseOptions {
  /** Variables the provider's SDK reads from the process environment (the in-process daemon finds them in `process.env`). */
  processEnv?: () => Record<string, string>
  /** More values no output may hold (the provider's own tokens, keys), read when the case ends. */
  more?: () => string[]
}

/**
 * Registers a case that runs the real bin (`latchkey run -c FILE`, trace logging) against the
 * same fake provider and its own upstream: injection, a rotation answered by an upstream 401
 * (bust and replay), and a provider failure served stale. What the SDKs print straight to the
 * process's stdout or stderr never reaches latchkey's pino stream, so only a child shows it:
 * no canary may appear in the child's stdout or stderr, and every stdout line must be JSON.
 * Run it after `testSharedProviderScenarios` and before a case that leaves the `app` secret
 * unreadable; it stores `second` as the `app` value first, and leaves `first` stored.
 */
export function testBinNoCanary(e2e: ProviderE2e, name: string, hooks: ProviderScenarioHooks, opts: BinCaseOptions = {}): void {
  const { canaries } = hooks
  test(name, async () => {
    hooks.rotate(canaries.second)
    let current = canaries.second
    const up = await recordingUpstream(() => current, canaries.key)
    const file = path.join(e2e.dir, 'latchkey-bin.json')
    await writeFile(file, JSON.stringify(daemonConfig(e2e.provider, e2e.setup, up.port)))
    const env = { NO_PROXY: '127.0.0.1,localhost', HOME: e2e.dir, AWS_EC2_METADATA_DISABLED: 'true', ...e2e.setup.env, ...opts.processEnv?.() }
    const bin = await startBin(['run', '-c', file], { env, cwd: e2e.dir })
    try {
      await waitReady(bin.adminUrl)
      const get = async (route: string, p: string) => {
        const res = await request(`${bin.proxyUrl}/${route}${p}`)
        return { status: res.statusCode, body: await res.body.text() }
      }
      const first = await get('up', '/bin')
      assert.equal(first.status, 200, first.body)

      hooks.rotate(canaries.first)
      current = canaries.first
      const appBefore = hooks.appCalls()
      const rotated = await get('up', '/bin-after-rotation')
      assert.equal(rotated.status, 200, rotated.body)
      assert.equal(hooks.appCalls() - appBefore, 1, 'the 401 cost one provider call')
      assert.deepEqual(
        up.received.slice(-2).map((x) => x.headers.authorization),
        [`Bearer ${canaries.second}`, `Bearer ${canaries.first}`],
      )

      assert.equal((await get('flaky', '/bin')).status, 200)
      const flakyBefore = hooks.flakyCalls?.()
      hooks.failFlaky()
      try {
        await sleep(400) // past the 300 ms TTL
        const stale = await get('flaky', '/bin-stale')
        assert.equal(stale.status, 200, stale.body)
        if (flakyBefore !== undefined) assert.ok(hooks.flakyCalls!() > flakyBefore, 'the provider was asked again')
      } finally {
        hooks.recover()
      }
    } finally {
      bin.child.kill('SIGTERM')
      await up.close()
    }
    const ran = await exitedWithin(bin)
    await rm(file, { force: true })
    assert.equal(ran.code, 0, `clean exit after SIGTERM (signal ${String(ran.signal)})`)
    const lines = ran.stdout.split('\n').filter((l) => l !== '')
    lines.forEach((line, i) => {
      let rec: unknown
      try {
        rec = JSON.parse(line)
      } catch {
        // The line is not printed: it may hold the very secret the case looks for.
        assert.fail(`stdout line #${i} (${line.length} chars) is not JSON`)
      }
      assert.ok(typeof rec === 'object' && rec !== null && !Array.isArray(rec), `stdout line #${i} is not a JSON object`)
    })
    for (const event of ['secret_fetched', 'replay', 'provider_error', 'stale_served']) {
      assert.ok(lines.some((l) => l.includes(`"event":"${event}"`)), `the child logged ${event}`)
    }
    assertNoCanary([ran.stdout, ran.stderr], [canaries.first, canaries.second, canaries.key, ...(opts.more?.() ?? [])])
  })
}

/** Poll `/readyz` (bounded: 100 tries, 15 s). */
async function waitReady(adminUrl: string): Promise<void> {
  const deadline = Date.now() + 15_000
  for (let i = 0; i < 100 && Date.now() < deadline; i++) {
    const res = await request(`${adminUrl}/readyz`)
    await res.body.dump()
    if (res.statusCode === 200) return
    await sleep(100)
  }
  throw new Error('the child did not become ready in 15 s')
}
