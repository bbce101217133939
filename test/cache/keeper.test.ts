import assert from 'node:assert/strict'
import { test } from 'node:test'
import pino from 'pino'
import { VirtualClock } from '../../bench/fleet/virtual-clock.ts'
import { fetchWithRetry, SharedThrottle, type RetryPolicy } from '../../src/cache/fetch-with-retry.ts'
import { SecretCache } from '../../src/cache/secret-cache.ts'
import type { CompiledCredential } from '../../src/config/load.ts'
import { ProviderError } from '../../src/errors.ts'
import type { SecretProvider } from '../../src/providers/provider.ts'
import { SecretValue } from '../../src/providers/secret-value.ts'
import { bearerCredential } from '../helpers/bearer-credential.ts'

// The cache, its keeper and the real retry loop on a virtual clock (bench/fleet's): no real
// timer runs, so minutes of outage take milliseconds. The provider is scripted: what it
// answers is the subject here, not its wire protocol (the e2e tests use real servers).

const credential = (name: string, ttlMs: number): CompiledCredential => bearerCredential(name, ttlMs)

const POLICY: RetryPolicy = { attempts: 3, timeoutMs: 1000, baseDelayMs: 200, maxDelayMs: 5000, deadlineMs: 10_000 }

function setup(answer: (ref: string, now: number) => 'ok' | ProviderError, opts: { maxStaleMs?: number } = {}) {
  const clock = new VirtualClock(0, 3)
  const lines: Array<Record<string, unknown>> = []
  const calls: Array<{ ref: string; at: number }> = []
  const provider: SecretProvider = {
    type: 'scripted',
    fetch(ref) {
      const at = clock.now()
      calls.push({ ref, at })
      const a = answer(ref, at)
      return new Promise((resolve, reject) => clock.setTimeout(() => (a === 'ok' ? resolve(new SecretValue(`value-${ref}`)) : reject(a)), 10))
    },
  }
  const throttle = new SharedThrottle()
  const cache = new SecretCache({
    maxEntries: 10,
    maxStaleMs: opts.maxStaleMs ?? 60_000,
    bustCooldownMs: 10_000,
    refreshAhead: 0.8,
    logger: pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) }),
    clock,
    fetch: (c) => fetchWithRetry(provider, c.ref, undefined, POLICY, undefined, {}, clock, throttle),
  })
  return { clock, cache, lines, calls }
}

test('a kept credential is refreshed ahead of expiry with no traffic: it holds an unexpired value at every second of 20 TTLs', async () => {
  const s = setup(() => 'ok', { maxStaleMs: 0 })
  const c = credential('idle', 10_000)
  void s.cache.keep(c)
  for (let t = 1000; t <= 200_000; t += 1000) {
    await s.clock.runUntil(t)
    assert.equal(s.cache.holds(c), true, `held at ${t} ms`)
  }
  // About one call per refresh interval (0.8 × TTL ± 10 %, the first drawn over the last 70 % of that span), not per second.
  assert.ok(s.calls.length >= 20 && s.calls.length <= 32, `${s.calls.length} provider calls in 20 TTLs`)
  s.cache.close()
})

test('a credential whose fetch fails at start is retried in the background with capped full-jitter backoff until it succeeds', async () => {
  let up = false
  const s = setup(() => (up ? 'ok' : new ProviderError('provider_unavailable', 'down')))
  const c = credential('cold', 60_000)
  void s.cache.keep(c)
  await s.clock.runUntil(POLICY.deadlineMs!)
  assert.deepEqual(s.cache.unready([c]), [{ name: 'cold', code: 'provider_unavailable' }])
  await s.clock.runUntil(120_000)
  const keeperAttempts = s.calls.length / POLICY.attempts
  // Cap: min(30 s, max(1 s, 0.8 × TTL)) = 30 s, base 1 s: at least 120 s / 30 s tries, and far fewer than one per second.
  assert.ok(keeperAttempts >= 4 && keeperAttempts <= 40, `${keeperAttempts} background fetches in 120 s`)
  const waits = s.lines.filter((l) => l.event === 'provider_error' || l.event === 'provider_retry_failed').map((l) => Number(l.retryInMs))
  assert.ok(waits.every((w) => w >= 0 && w <= 30_000), `every wait within the cap: ${waits.join(', ')}`)
  up = true
  const cameBack = s.clock.now()
  await s.clock.runUntil(cameBack + 30_000 + POLICY.deadlineMs!)
  assert.deepEqual(s.cache.unready([c]), [], 'ready within the cap of the provider coming back, with no request')
  s.cache.close()
})

test('a 30 s outage writes its log lines once per state change, not once per attempt, however many requests and retries it sees', async () => {
  let down = false
  const s = setup(() => (down ? new ProviderError('provider_unavailable', 'down') : 'ok'), { maxStaleMs: 600_000 })
  const c = credential('busy', 4_000)
  void s.cache.keep(c)
  await s.clock.runUntil(10_000)
  const linesBefore = s.lines.length
  const callsBefore = s.calls.length
  down = true
  const from = s.clock.now()
  // A request every 100 ms through the outage: each is served (stale within maxStale once the value expires).
  let served = 0
  for (let t = from + 100; t <= from + 30_000; t += 100) {
    await s.clock.runUntil(t)
    // A request may wait (the stale grace) for a refresh: the clock moves on while it does.
    if ((await s.clock.settle(s.cache.get(c))).status === 'fulfilled') served++
  }
  down = false
  await s.clock.runUntil(from + 30_000 + 60_000)
  const during = s.lines.slice(linesBefore)
  const attempts = s.calls.length - callsBefore
  assert.equal(served, 300)
  assert.ok(attempts >= 6, `the provider was tried ${attempts} times`)
  assert.deepEqual(
    during.map((l) => l.event),
    ['provider_error', 'stale_served', 'provider_recovered'],
    'one line when it fails, one when a stale value is first served, one when it recovers',
  )
  s.cache.close()
})

test('a 429 with Retry-After on one credential holds every credential of that provider until it ends', async () => {
  const s = setup((ref, now) => (ref === 'a' && now < 5 ? new ProviderError('throttled', 'slow down', { retryAfterMs: 5000 }) : 'ok'))
  const a = credential('a', 60_000)
  const b = credential('b', 60_000)
  void s.cache.keep(a)
  await s.clock.runUntil(20) // a's first call has answered 429
  void s.cache.keep(b)
  await s.clock.runUntil(20_000)
  const bCalls = s.calls.filter((x) => x.ref === 'b')
  assert.ok(bCalls.length >= 1)
  assert.ok(bCalls.every((x) => x.at >= 5000), `b waited for a's Retry-After: first call at ${bCalls[0]?.at} ms`)
  assert.deepEqual(s.cache.unready([a, b]), [])
  s.cache.close()
})

test('while a credential waits for its retry, requests do not call the provider: 500 of them share at most the one retry', async () => {
  const s = setup(() => new ProviderError('provider_unavailable', 'down'))
  const c = credential('gated', 60_000)
  assert.equal((await s.clock.settle(s.cache.get(c))).status, 'rejected')
  const after = s.calls.length
  const all = await s.clock.settle(Promise.allSettled(Array.from({ length: 500 }, () => s.cache.get(c))))
  assert.ok(all.status === 'fulfilled' && all.value.every((r) => r.status === 'rejected'))
  assert.ok(s.calls.length - after <= POLICY.attempts, `${s.calls.length - after} provider calls for 500 requests: one shared fetch at most`)
  s.cache.close()
})
