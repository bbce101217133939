import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import path from 'node:path'
import { test } from 'node:test'
import { pathToFileURL } from 'node:url'
import { ROOT } from '../helpers/child.ts'

// Real timers and a real process: whether a timer holds the event loop only shows in a
// process that has nothing else to do. An attempt's timeout must not (the provider's socket
// holds the loop while it runs); the backoff between attempts and settleWithin's bound must
// (someone may be awaiting the fetch, and nothing else holds the loop then).

const MODULE = pathToFileURL(path.join(ROOT, 'src', 'cache', 'fetch-with-retry.ts')).href
const SETTLE = pathToFileURL(path.join(ROOT, 'src', 'cache', 'settle-within.ts')).href
const ERRORS = pathToFileURL(path.join(ROOT, 'src', 'errors.ts')).href
const EXIT_BOUND_MS = 10_000

/** Run `body` as an ES module in a child Node; resolves with how it ended and when (killed after EXIT_BOUND_MS). */
function runChild(body: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number }> {
  const script = `import { fetchWithRetry } from ${JSON.stringify(MODULE)}\nimport { settleWithin } from ${JSON.stringify(SETTLE)}\nimport { ProviderError } from ${JSON.stringify(ERRORS)}\n${body}`
  const started = performance.now()
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--conditions=development', '--input-type=module', '-e', script], { env: { PATH: process.env.PATH ?? '' }, cwd: ROOT })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), EXIT_BOUND_MS)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, ms: performance.now() - started })
    })
  })
}

test('a fetch waiting out a Retry-After keeps the process alive until its next attempt: an awaited fetch is never cut off', async () => {
  // A script awaiting the result (`await interceptor.ready`) with nothing else to do: it must
  // see the fetch through, not exit with an unsettled await. Bounded: a 1.5 s Retry-After.
  const r = await runChild(`
let calls = 0
const provider = { type: 'throttled', fetch: () => (++calls === 1 ? Promise.reject(new ProviderError('throttled', 'slow down', { retryAfterMs: 1_500 })) : Promise.resolve('value-after-wait')) }
const policy = { attempts: 3, timeoutMs: 5_000, baseDelayMs: 100, maxDelayMs: 1_000, deadlineMs: 30_000 }
const started = performance.now()
await fetchWithRetry(provider, 'ref', undefined, policy, undefined)
process.stdout.write('fetched after ' + calls + ' calls, ' + Math.round(performance.now() - started) + ' ms\\n')
`)
  assert.equal(r.signal, null, `the child was still running after ${EXIT_BOUND_MS} ms (stderr: ${r.stderr})`)
  assert.equal(r.code, 0, `the process exited while the fetch was awaited (stderr: ${r.stderr})`)
  const m = /^fetched after 2 calls, (\d+) ms$/m.exec(r.stdout)
  assert.ok(m, `stdout: ${r.stdout}`)
  assert.ok(Number(m[1]) >= 1_400, `the Retry-After was waited out: ${m[1]} ms`)
})

test('an attempt that never answers, cut at a 60 s timeoutMs, does not keep an otherwise idle process alive', async () => {
  const r = await runChild(`
const provider = { type: 'silent', fetch: () => { process.stdout.write('called\\n'); return new Promise(() => undefined) } }
const policy = { attempts: 1, timeoutMs: 60_000, baseDelayMs: 100, maxDelayMs: 1_000 }
void fetchWithRetry(provider, 'ref', undefined, policy, undefined).catch(() => undefined)
`)
  assert.equal(r.signal, null, `the child was still running after ${EXIT_BOUND_MS} ms (stderr: ${r.stderr})`)
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /^called$/m)
})

test('a request waiting (settleWithin) for a fetch that sleeps out a Retry-After keeps the process alive until its bound, then sees pending', async () => {
  // The shim's case: nothing but the request's own bound holds the loop while the fetch sleeps.
  const r = await runChild(`
let calls = 0
const provider = { type: 'throttled', fetch: () => (++calls === 1 ? Promise.reject(new ProviderError('throttled', 'slow down', { retryAfterMs: 3_000 })) : Promise.resolve('late')) }
const policy = { attempts: 3, timeoutMs: 5_000, baseDelayMs: 100, maxDelayMs: 1_000, deadlineMs: 30_000 }
const started = performance.now()
const settled = await settleWithin(fetchWithRetry(provider, 'ref', undefined, policy, undefined), 1_500)
process.stdout.write('request saw ' + settled.state + ' after ' + Math.round(performance.now() - started) + ' ms\\n')
`)
  assert.equal(r.signal, null, `the child was still running after ${EXIT_BOUND_MS} ms (stderr: ${r.stderr})`)
  assert.equal(r.code, 0, `the process exited while the request was still waiting (stderr: ${r.stderr})`)
  const m = /^request saw pending after (\d+) ms$/m.exec(r.stdout)
  assert.ok(m, `stdout: ${r.stdout}`)
  assert.ok(Number(m[1]) >= 1_400, `the wait ended early: ${m[1]} ms`)
})
