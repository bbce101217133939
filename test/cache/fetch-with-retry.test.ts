import assert from 'node:assert/strict'
import { afterEach, beforeEach, mock, test } from 'node:test'
import { SYSTEM_CLOCK } from '../../src/cache/clock.ts'
import { fetchWithRetry, type RetryClock, type RetryPolicy } from '../../src/cache/fetch-with-retry.ts'
import { ProviderError } from '../../src/errors.ts'
import type { SecretProvider } from '../../src/providers/provider.ts'
import { SecretValue } from '../../src/providers/secret-value.ts'

// The retry loop runs on node's timers; fake timers (setTimeout + Date) drive it, and the
// jitter's random draw is injected. The provider is a scripted SecretProvider.

const T0 = 1_000_000

beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 }))
afterEach(() => mock.timers.reset())

type Step = 'ok' | 'hang' | ProviderError

interface Scripted {
  provider: SecretProvider
  /** Fake-clock time of each call, relative to T0. */
  calls: number[]
  /** Fake-clock time at which each call's signal fired (undefined: it did not). */
  aborts: Array<number | undefined>
}

/** Answers call n with script[n] (the last step repeats). `hang` never settles and ignores its signal. */
function scripted(script: Step[]): Scripted {
  const calls: number[] = []
  const aborts: Array<number | undefined> = []
  const provider: SecretProvider = {
    type: 'scripted',
    fetch(_ref, opts) {
      const i = calls.length
      calls.push(Date.now() - T0)
      aborts.push(undefined)
      opts.signal.addEventListener('abort', () => (aborts[i] = Date.now() - T0), { once: true })
      const step = script[Math.min(i, script.length - 1)]
      if (step === 'hang') return new Promise<SecretValue>(() => undefined)
      if (step === 'ok' || step === undefined) return Promise.resolve(new SecretValue('scripted-value'))
      return Promise.reject(step)
    },
  }
  return { provider, calls, aborts }
}

const clock = (draw: number): RetryClock => ({ ...SYSTEM_CLOCK, random: () => draw })

const transient = () => new ProviderError('provider_unavailable', 'down')

/** Let promise callbacks run, then fire due timers 1 ms at a time until `p` settles (bounded). */
async function drive<T>(p: Promise<T>, maxMs = 120_000): Promise<{ value?: T; error?: unknown; at: number }> {
  let settled = false
  const out = p.then(
    (value) => ({ value, at: Date.now() - T0 }),
    (error: unknown) => ({ error, at: Date.now() - T0 }),
  )
  void out.then(() => (settled = true))
  for (let ms = 0; ms <= maxMs && !settled; ms++) {
    await new Promise((r) => setImmediate(r))
    if (!settled) mock.timers.tick(1)
  }
  assert.ok(settled, `fetchWithRetry did not settle within ${maxMs} fake ms`)
  return out
}

const policy = (p: Partial<RetryPolicy>): RetryPolicy => ({ attempts: 3, timeoutMs: 1000, baseDelayMs: 100, maxDelayMs: 1000, ...p })

test('the wait before each retry doubles up to maxDelayMs and is a full-jitter draw from it', async () => {
  for (const draw of [0.5, 0.999]) {
    const s = scripted([transient(), transient(), transient(), transient(), transient(), 'ok'])
    const delays: number[] = []
    const r = await drive(fetchWithRetry(s.provider, 'ref', undefined, policy({ attempts: 6 }), undefined, { onRetry: (_e, d) => delays.push(d) }, clock(draw)))
    assert.equal(r.value?.reveal(), 'scripted-value')
    const caps = [100, 200, 400, 800, 1000] // base 100 doubling, capped at 1000
    assert.deepEqual(delays, caps.map((c) => c * draw))
    // The loop really waited each drawn delay (to the fake millisecond, rounded up) before calling again.
    const gaps = s.calls.slice(1).map((t, i) => t - (s.calls[i] ?? 0))
    assert.deepEqual(gaps, delays.map((d) => Math.ceil(d)))
  }
})

test('a draw of zero retries at once: the jitter is full, not a fixed fraction', async () => {
  const s = scripted([transient(), 'ok'])
  const r = await drive(fetchWithRetry(s.provider, 'ref', undefined, policy({}), undefined, {}, clock(0)))
  assert.equal(r.value?.reveal(), 'scripted-value')
  assert.equal(s.calls.length, 2)
  assert.ok((s.calls[1] ?? Infinity) <= 1, `retried after ${s.calls[1]} ms`) // a 0 ms node timer fires on the next millisecond
})

test("a service's Retry-After is waited in full even when it is longer than maxDelayMs", async () => {
  const s = scripted([new ProviderError('throttled', 'slow down', { retryAfterMs: 3000 }), 'ok'])
  const delays: number[] = []
  const r = await drive(fetchWithRetry(s.provider, 'ref', undefined, policy({ maxDelayMs: 1000, deadlineMs: 10_000 }), undefined, { onRetry: (_e, d) => delays.push(d) }, clock(0.5)))
  assert.equal(r.value?.reveal(), 'scripted-value')
  assert.deepEqual(delays, [3000])
  assert.deepEqual(s.calls, [0, 3000])
})

test('a Retry-After shorter than the drawn backoff does not shorten the backoff', async () => {
  const s = scripted([new ProviderError('throttled', 'slow down', { retryAfterMs: 10 }), 'ok'])
  const delays: number[] = []
  await drive(fetchWithRetry(s.provider, 'ref', undefined, policy({ baseDelayMs: 400 }), undefined, { onRetry: (_e, d) => delays.push(d) }, clock(0.5)))
  assert.deepEqual(delays, [200])
})

test('a Retry-After that would end past the deadline fails at once as throttled, without sleeping', async () => {
  const s = scripted([new ProviderError('throttled', 'slow down', { retryAfterMs: 30_000 }), 'ok'])
  let retries = 0
  const r = await drive(fetchWithRetry(s.provider, 'ref', undefined, policy({ deadlineMs: 10_000 }), undefined, { onRetry: () => retries++ }, clock(0.5)))
  assert.equal((r.error as ProviderError).code, 'throttled')
  assert.equal(r.at, 0, 'no time passed')
  assert.equal(s.calls.length, 1)
  assert.equal(retries, 0)
})

test('a provider that keeps failing transiently is called exactly `attempts` times, then its last error is thrown', async () => {
  const s = scripted([transient(), transient(), new ProviderError('provider_timeout', 'the last one')])
  const r = await drive(fetchWithRetry(s.provider, 'ref', undefined, policy({ attempts: 3 }), undefined, {}, clock(0.5)))
  assert.equal(s.calls.length, 3)
  assert.equal((r.error as ProviderError).message, 'the last one')
})

test('a non-retryable error stops the loop at once', async () => {
  for (const err of [new ProviderError('access_denied', 'policy says no'), new ProviderError('provider_unavailable', 'bad config', { retryable: false })]) {
    const s = scripted([err, 'ok'])
    const r = await drive(fetchWithRetry(s.provider, 'ref', undefined, policy({ attempts: 5 }), undefined, {}, clock(0.5)))
    assert.equal(r.error, err)
    assert.equal(s.calls.length, 1)
  }
})

test('an attempt that does not answer is cut at timeoutMs as provider_timeout (even if the provider ignores its signal) and retried', async () => {
  const s = scripted(['hang', 'ok'])
  const results: string[] = []
  const r = await drive(fetchWithRetry(s.provider, 'ref', undefined, policy({ timeoutMs: 700 }), undefined, { onAttempt: (result) => results.push(result) }, clock(0.5)))
  assert.equal(r.value?.reveal(), 'scripted-value')
  assert.equal(s.aborts[0], 700, "the first call's signal fired at timeoutMs")
  assert.deepEqual(results, ['provider_timeout', 'ok'])
  assert.deepEqual(s.calls, [0, 750]) // 700 ms timeout + 0.5 × 100 ms backoff
})

test('the overall deadline bounds attempts × timeoutMs + backoff: the last attempt gets only what is left', async () => {
  const s = scripted(['hang'])
  const r = await drive(fetchWithRetry(s.provider, 'ref', undefined, policy({ attempts: 10, timeoutMs: 1000, deadlineMs: 2500 }), undefined, {}, clock(0.5)))
  assert.equal((r.error as ProviderError).code, 'provider_timeout')
  assert.ok(r.at <= 2500, `gave up at ${r.at} ms, past the 2500 ms deadline`)
  // 0–1000 first call, 50 ms wait, 1050–2050 second, 100 ms wait, 2150–2500 third (shortened).
  assert.deepEqual(s.calls, [0, 1050, 2150])
  assert.deepEqual(s.aborts, [1000, 2050, 2500])
})

test("the caller's signal stops the loop during a backoff wait", async () => {
  const s = scripted([transient(), 'ok'])
  const caller = new AbortController()
  const p = fetchWithRetry(s.provider, 'ref', undefined, policy({ baseDelayMs: 1000 }), caller.signal, {}, clock(0.5))
  await new Promise((r) => setImmediate(r))
  caller.abort()
  const r = await drive(p)
  assert.equal((r.error as ProviderError).code, 'provider_unavailable')
  assert.equal(s.calls.length, 1)
  assert.equal(r.at, 0)
})
