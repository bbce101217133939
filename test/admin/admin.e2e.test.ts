import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Daemon } from '../../src/daemon.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'
import { logWaiter } from '../helpers/log-waiter.ts'

const CANARY_A = 'canary-admin-a-2f9e1b7c'
const CANARY_B = 'canary-admin-b-8c3d0a64'
const ADMIN_TOKEN = 'admin-token-5c1e0b9a7d3f2468'

let withToken: Daemon
let noToken: Daemon
const capture = captureLogs()
const logs = { ...capture, ...logWaiter(capture) }

const config = (admin: Record<string, unknown>) => ({
  admin,
  providers: { dev: { type: 'env' } },
  credentials: {
    a: { provider: 'dev', ref: 'CANARY_A', hosts: ['a.example.com'], inject: { type: 'bearer' } },
    b: { provider: 'dev', ref: 'CANARY_B', hosts: ['b.example.com'], inject: { type: 'bearer' } },
    // Same provider + ref as `a`: one cache entry (T7), so three credentials hold two entries.
    a2: { provider: 'dev', ref: 'CANARY_A', hosts: ['a2.example.com'], inject: { type: 'header', header: 'X-Key' } },
  },
})

before(async () => {
  const common = { env: { CANARY_A, CANARY_B }, logStream: logs.stream }
  withToken = await startTestDaemon({ ...common, config: config({ token: ADMIN_TOKEN }) })
  noToken = await startTestDaemon({ ...common, config: config({}) })
})

after(async () => {
  await withToken?.close()
  await noToken?.close()
})

const clear = (d: Daemon, body: string | undefined, token?: string) =>
  fetch(`${d.adminUrl}/v1/cache/clear`, { method: 'POST', body, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } })

test('POST /v1/cache/clear with {} and the admin token clears every cached secret and says how many; prefetched ones are fetched again by themselves', async () => {
  assert.equal((await fetch(`${withToken.adminUrl}/readyz`)).status, 200)
  const from = logs.count()
  const res = await clear(withToken, '{}', ADMIN_TOKEN)
  assert.equal(res.status, 200)
  assert.deepEqual(await res.json(), { cleared: 2 })
  // Both entries (a and a2 share one) are fetched again with no request, and readiness is back.
  for (const name of ['a', 'b']) await logs.next(`the refetch of ${name}`, (r) => r.event === 'secret_fetched' && (r.credential === name || (name === 'a' && r.credential === 'a2')), { from })
  const ready = await fetch(`${withToken.adminUrl}/readyz`)
  assert.equal(ready.status, 200, await ready.text())
  const again = await clear(withToken, '{}', ADMIN_TOKEN)
  assert.deepEqual(await again.json(), { cleared: 2 })
})

test('with no admin token configured, cache clear is 403 admin_disabled, whatever token is presented', async () => {
  for (const token of [undefined, ADMIN_TOKEN, 'anything-at-all-long-enough']) {
    const res = await clear(noToken, '{}', token)
    assert.equal(res.status, 403)
    assert.equal(res.headers.get('x-latchkey-error'), 'admin_disabled')
    const body = (await res.json()) as { error: string; message: string }
    assert.equal(body.error, 'admin_disabled')
    assert.match(body.message, /no admin token is configured/)
  }
  // The cache was not touched.
  assert.equal((await fetch(`${noToken.adminUrl}/readyz`)).status, 200)
})

test('the admin calls log no canary', () => {
  assert.ok(logs.lines().some((l) => l.includes('"event":"cache_cleared"')))
  assertNoCanary(logs.lines(), [CANARY_A, CANARY_B, ADMIN_TOKEN])
})
