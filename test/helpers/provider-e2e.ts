import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { startDaemon, type Daemon } from '../../src/daemon.ts'
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
  /** GET through the daemon's reverse proxy: `get('up', '/api')`. */
  get(route: 'up' | 'flaky', p?: string): Promise<{ status: number; body: string }>
  /** From now on the upstream accepts only the rotated token. */
  acceptSecond(): void
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

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), `latchkey-${name}-e2e-`))
    const s = await setup(dir)
    up = await startUpstream()
    up.handle((req, res) => {
      const ok = req.headers.host?.startsWith('localhost') ? req.headers['x-api-key'] === canaries.key : req.headers.authorization === `Bearer ${current}`
      res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' })
      res.end(ok ? '{"ok":true}' : '{"error":"unauthorized"}')
    })
    daemon = await startDaemon({
      baseDir: dir,
      env: s.env ?? {},
      logStream: logs.stream,
      processMetrics: false,
      waitReady: true,
      config: {
        listen: '127.0.0.1:0',
        admin: { listen: '127.0.0.1:0' },
        log: { level: 'trace' },
        cache: { ttl: '1h', maxStale: '1500ms', bustCooldown: '50ms', fetchTimeout: '2s', fetchAttempts: s.fetchAttempts },
        providers: { [name]: s.provider },
        credentials: {
          app: { provider: name, ...s.app, hosts: [`127.0.0.1:${up.port}`], inject: { type: 'bearer' }, insecure: true },
          flaky: { provider: name, ...s.flaky, hosts: [`localhost:${up.port}`], inject: { type: 'header', header: 'X-Api-Key' }, insecure: true, ttl: '300ms' },
        },
        routes: {
          up: { upstream: `http://127.0.0.1:${up.port}` },
          flaky: { upstream: `http://localhost:${up.port}` },
        },
      },
    })
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
    hooks.failFlaky()
    await sleep(400) // past the 300 ms TTL: the entry is stale
    const stale = await e2e.get('flaky', '/stale')
    assert.equal(stale.status, 200, 'served the stale value while the provider fails')
    assert.equal(e2e.up.received.at(-1)?.headers['x-api-key'], canaries.key)
    if (hooks.flakyCalls) assert.ok(hooks.flakyCalls() >= 2, 'the provider was asked again')
    await sleep(1_700) // past maxStale
    const failed = await e2e.get('flaky', '/too-stale')
    assert.equal(failed.status, 503, failed.body)
    assert.match(failed.body, /secret_unavailable/)
    hooks.recover()
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
