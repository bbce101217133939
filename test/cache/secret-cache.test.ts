import assert from 'node:assert/strict'
import { test } from 'node:test'
import pino from 'pino'
import { SYSTEM_CLOCK } from '../../src/cache/clock.ts'
import { SecretCache } from '../../src/cache/secret-cache.ts'
import type { CompiledCredential } from '../../src/config/load.ts'
import { LatchkeyError, ProviderError } from '../../src/errors.ts'
import { SecretValue } from '../../src/providers/secret-value.ts'
import { bearerCredential } from '../helpers/bearer-credential.ts'

// The cache's provider call is an injected function: these tests drive it directly with a
// controllable clock. End-to-end tests exercise the same cache through real providers.

const credential = (name = 'c', ttlMs = 60_000): CompiledCredential => bearerCredential(name, ttlMs)

function setup(opts: { maxStaleMs?: number; bustCooldownMs?: number; staleGraceMs?: number; maxEntries?: number } = {}) {
  let now = 1_000_000
  const values: Array<string | Error> = []
  let calls = 0
  let gate: Promise<void> | undefined
  const dropped: string[] = []
  const staleServed: string[] = []
  const cache = new SecretCache({
    maxEntries: opts.maxEntries ?? 10,
    maxStaleMs: opts.maxStaleMs ?? 30_000,
    bustCooldownMs: opts.bustCooldownMs ?? 10_000,
    ...(opts.staleGraceMs === undefined ? {} : { staleGraceMs: opts.staleGraceMs }),
    onDrop: (key) => dropped.push(key),
    observe: { stale: (name) => staleServed.push(name) },
    refreshAhead: 0.8,
    logger: pino({ level: 'silent' }),
    // Timers stay real (the stale grace); time and the jitter draw are the test's. Jitter factor exactly 1.0.
    clock: { now: () => now, random: () => 0.5, setTimeout: SYSTEM_CLOCK.setTimeout },
    async fetch() {
      calls++
      if (gate) await gate
      const v = values.length > 1 ? values.shift() : values[0]
      if (v instanceof Error) throw v
      return new SecretValue(v ?? 'none')
    },
  })
  return {
    cache,
    values,
    dropped,
    staleServed,
    calls: () => calls,
    advance: (ms: number) => (now += ms),
    hold() {
      let release!: () => void
      gate = new Promise((r) => (release = r))
      return () => {
        gate = undefined
        release()
      }
    },
  }
}

test('a cold burst of concurrent lookups causes exactly one provider call', async () => {
  const s = setup()
  s.values.push('v1')
  const release = s.hold()
  const all = Array.from({ length: 500 }, () => s.cache.get(credential()))
  release()
  const results = await Promise.all(all)
  assert.equal(s.calls(), 1)
  assert.ok(results.every((r) => r.headerValue === 'Bearer v1'))
})

test('a value is served from the cache until its TTL passes, then fetched again', async () => {
  const s = setup()
  s.values.push('v1', 'v2')
  const c = credential('c', 60_000)
  assert.equal((await s.cache.get(c)).headerValue, 'Bearer v1')
  s.advance(30_000)
  assert.equal((await s.cache.get(c)).headerValue, 'Bearer v1')
  assert.equal(s.calls(), 1)
  s.advance(31_000)
  assert.equal((await s.cache.get(c)).headerValue, 'Bearer v2')
  assert.equal(s.calls(), 2)
})

test('an entry in use is refreshed ahead of expiry without making the request wait', async () => {
  const s = setup()
  s.values.push('v1', 'v2')
  const c = credential('c', 60_000)
  await s.cache.get(c)
  s.advance(50_000) // past 80 % of the TTL
  const r = await s.cache.get(c)
  assert.equal(r.headerValue, 'Bearer v1', 'the current value is returned at once')
  await new Promise((r) => setImmediate(r))
  assert.equal(s.calls(), 2, 'a background refresh ran')
  assert.equal((await s.cache.get(c)).headerValue, 'Bearer v2')
})

test('when the provider fails the old value is served up to maxStale past expiry, then secret_unavailable', async () => {
  const s = setup({ maxStaleMs: 30_000 })
  s.values.push('v1', new ProviderError('provider_unavailable', 'down'))
  const c = credential('c', 60_000)
  await s.cache.get(c)
  s.advance(61_000)
  const stale = await s.cache.get(c)
  assert.equal(stale.headerValue, 'Bearer v1')
  assert.equal(stale.stale, true)
  s.advance(30_000)
  await assert.rejects(s.cache.get(c), (err: LatchkeyError) => err.code === 'secret_unavailable' && /provider_unavailable/.test(err.message))
})

test('a bust with a rotated secret returns the new value; concurrent busts share one fetch', async () => {
  const s = setup()
  s.values.push('old', 'new')
  const c = credential()
  const first = await s.cache.get(c)
  const busts = await Promise.all(Array.from({ length: 20 }, () => s.cache.bust(c, first.secret)))
  assert.equal(s.calls(), 2)
  assert.ok(busts.every((b) => b?.headerValue === 'Bearer new'))
})

test('a bust that fetches the same value reports no change, and a second bust within the cooldown does not refetch', async () => {
  const s = setup({ bustCooldownMs: 10_000 })
  s.values.push('same')
  const c = credential()
  const first = await s.cache.get(c)
  assert.equal(await s.cache.bust(c, first.secret), undefined)
  assert.equal(s.calls(), 2)
  const again = await s.cache.get(c)
  assert.equal(await s.cache.bust(c, again.secret), undefined)
  assert.equal(s.calls(), 2, 'cooldown holds')
  s.advance(10_001)
  const later = await s.cache.get(c)
  await s.cache.bust(c, later.secret)
  assert.equal(s.calls(), 3, 'after the cooldown one more refetch is allowed')
})

test('clear drops one credential or all and reports how many entries went', async () => {
  const s = setup()
  s.values.push('v')
  await s.cache.get(credential('a'))
  await s.cache.get(credential('b'))
  assert.equal(s.cache.clear(credential('a')), 1)
  assert.equal(s.cache.clear(credential('a')), 0)
  assert.equal(s.cache.clear(), 1)
  assert.equal(s.cache.size, 0)
})

test('an unrenderable secret fails with the injector error and is not retried per request', async () => {
  const s = setup()
  s.values.push('v')
  const c = credential()
  ;(c.injector as { render: (v: string) => string }).render = () => {
    throw new LatchkeyError('header_value_invalid', 'credential c: rendered header value contains CR, LF or NUL')
  }
  await assert.rejects(s.cache.get(c), (e: LatchkeyError) => e.code === 'header_value_invalid')
  await assert.rejects(s.cache.get(c), (e: LatchkeyError) => e.code === 'header_value_invalid')
  assert.equal(s.calls(), 1)
})

test('an expired value within maxStale is served once its refresh has taken staleGraceMs; the refresh goes on, shared, and replaces it', async () => {
  const s = setup({ maxStaleMs: 30_000, staleGraceMs: 30 })
  s.values.push('v1', 'v2')
  const c = credential('c', 60_000)
  await s.cache.get(c)
  s.advance(61_000) // expired, well within maxStale
  const release = s.hold() // the provider is slow, not failing
  const t = performance.now()
  const during = await Promise.all(Array.from({ length: 5 }, () => s.cache.get(c)))
  const took = performance.now() - t
  assert.ok(during.every((r) => r.headerValue === 'Bearer v1' && r.stale), 'the old value, marked stale')
  assert.ok(took >= 25 && took < 1000, `waited ${Math.round(took)} ms, about the 30 ms grace`)
  assert.deepEqual(s.staleServed, ['c', 'c', 'c', 'c', 'c'], 'each stale answer is counted')
  assert.equal(s.calls(), 2, 'one refresh for all of them')
  release()
  await new Promise((r) => setImmediate(r))
  const after = await s.cache.get(c)
  assert.equal(after.headerValue, 'Bearer v2', 'the background refresh replaced the value')
  assert.equal(after.stale, false)
  assert.equal(s.calls(), 2)
})

test('once one request has waited out the grace for a slow refresh, later requests get the old value at once', async () => {
  const s = setup({ maxStaleMs: 30_000, staleGraceMs: 500 })
  s.values.push('v1', 'v2')
  const c = credential('c', 60_000)
  await s.cache.get(c)
  s.advance(61_000)
  const release = s.hold()
  const first = await s.cache.get(c)
  assert.equal(first.stale, true)
  const t = performance.now()
  const later = await s.cache.get(c)
  const took = performance.now() - t
  assert.equal(later.headerValue, 'Bearer v1')
  assert.ok(took < 250, `the later request did not wait the 500 ms grace again (${Math.round(took)} ms)`)
  assert.deepEqual(s.staleServed, ['c', 'c'])
  assert.equal(s.calls(), 2, 'still one refresh')
  release()
  await new Promise((r) => setImmediate(r))
  assert.equal((await s.cache.get(c)).stale, false, 'the refresh landed; the next slow refresh waits the grace again')
})

test('a refresh that answers within staleGraceMs is waited for: no stale value is served', async () => {
  const s = setup({ staleGraceMs: 5_000 })
  s.values.push('v1', 'v2')
  const c = credential('c', 60_000)
  await s.cache.get(c)
  s.advance(61_000)
  const release = s.hold()
  const p = s.cache.get(c)
  setTimeout(release, 20)
  const r = await p
  assert.equal(r.headerValue, 'Bearer v2')
  assert.equal(r.stale, false)
  assert.deepEqual(s.staleServed, [])
})

test('past maxStale a slow provider is waited for like a cold miss (the caller bounds the wait)', async () => {
  const s = setup({ maxStaleMs: 1_000, staleGraceMs: 10 })
  s.values.push('v1', 'v2')
  const c = credential('c', 60_000)
  await s.cache.get(c)
  s.advance(62_000) // past expiry + maxStale
  const release = s.hold()
  let settled = false
  const p = s.cache.get(c).finally(() => (settled = true))
  await new Promise((r) => setTimeout(r, 50))
  assert.equal(settled, false, 'no stale value past maxStale')
  release()
  assert.equal((await p).headerValue, 'Bearer v2')
})

test('a bust does not report its eviction as a drop; a bust whose refetch fails, a clear and an LRU eviction do', async () => {
  const s = setup({ bustCooldownMs: 0, maxEntries: 2 })
  s.values.push('old', 'new')
  const c = credential('c')
  const first = await s.cache.get(c)
  assert.equal((await s.cache.bust(c, first.secret))?.headerValue, 'Bearer new')
  assert.deepEqual(s.dropped, [], 'the refetched value replaced the refused one')
  s.values.length = 0
  s.values.push(new ProviderError('provider_unavailable', 'down'))
  const second = await s.cache.get(c)
  s.advance(1)
  assert.equal(await s.cache.bust(c, second.secret), undefined)
  assert.deepEqual(s.dropped, [c.cacheKey], 'nothing replaced it')
  s.values.length = 0
  s.values.push('v')
  await s.cache.get(credential('a'))
  await s.cache.get(credential('b'))
  await s.cache.get(credential('d')) // maxEntries 2: evicts a
  assert.deepEqual(s.dropped.slice(1), [credential('a').cacheKey])
  s.cache.clear()
  assert.deepEqual(s.dropped.slice(2).sort(), [credential('b').cacheKey, credential('d').cacheKey].sort())
})

test('a fetch that ends throttled with a Retry-After holds further provider calls for that key until it has passed', async () => {
  const s = setup({ maxStaleMs: 60_000 })
  s.values.push('v1', new ProviderError('throttled', 'slow down', { retryAfterMs: 30_000 }), 'v2')
  const c = credential('c', 60_000)
  await s.cache.get(c)
  s.advance(61_000)
  const stale = await s.cache.get(c)
  assert.equal(stale.stale, true, 'throttled: the old value within maxStale')
  assert.equal(s.calls(), 2)
  for (let i = 0; i < 5; i++) assert.equal((await s.cache.get(c)).stale, true)
  assert.equal(s.calls(), 2, 'no provider call while the Retry-After runs')
  s.advance(30_001)
  assert.equal((await s.cache.get(c)).headerValue, 'Bearer v2')
  assert.equal(s.calls(), 3)
})

test('each fetched value lives for its TTL with ±10 % jitter: the random draw sets where in that band it expires', async () => {
  for (const [draw, factor] of [
    [0, 0.9],
    [0.999_999, 1.1],
  ] as const) {
    let now = 5_000_000
    const cache = new SecretCache({
      maxEntries: 10,
      maxStaleMs: 0,
      bustCooldownMs: 10_000,
      refreshAhead: 0.8,
      logger: pino({ level: 'silent' }),
      clock: { now: () => now, random: () => draw, setTimeout: SYSTEM_CLOCK.setTimeout },
      fetch: async () => new SecretValue('jittered'),
    })
    const c = credential('j', 100_000)
    await cache.prefetch(c)
    const lifetime = 100_000 * factor
    now += lifetime - 50
    assert.equal(cache.holds(c), true, `draw ${draw}: still held just before ${lifetime} ms`)
    now += 100
    assert.equal(cache.holds(c), false, `draw ${draw}: expired just after ${lifetime} ms`)
  }
})

test('maxEntries bounds the values held: the least recently used one is evicted and reported dropped', async () => {
  const s = setup({ maxEntries: 2 })
  s.values.push('v')
  for (const name of ['a', 'b']) await s.cache.get(credential(name))
  await s.cache.get(credential('a')) // a is now the most recently used
  await s.cache.get(credential('c'))
  assert.equal(s.cache.size, 2)
  assert.deepEqual(s.dropped, [credential('b').cacheKey])
  assert.equal(s.cache.holds(credential('a')), true)
  assert.equal(s.cache.holds(credential('b')), false)
})

test('a value past TTL + maxStale leaves memory by itself, even when nothing asks for it again', async () => {
  // The real clock: lru-cache's purge timer is what is under test. Bounded: 40 ms TTL, 40 ms maxStale, at most 3 s.
  const dropped: string[] = []
  const cache = new SecretCache({
    maxEntries: 10,
    maxStaleMs: 40,
    bustCooldownMs: 10_000,
    refreshAhead: 0.8,
    logger: pino({ level: 'silent' }),
    onDrop: (key) => dropped.push(key),
    fetch: async () => new SecretValue('short-lived'),
  })
  const c = credential('gone', 40)
  assert.equal(await cache.prefetch(c), true)
  assert.equal(cache.size, 1)
  const deadline = Date.now() + 3_000
  while (cache.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  assert.equal(cache.size, 0, 'the entry was purged')
  assert.deepEqual(dropped, [c.cacheKey], 'and reported dropped, so the scrubber retires it')
})
