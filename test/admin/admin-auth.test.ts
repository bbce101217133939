import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import type http from 'node:http'
import { after, before, test } from 'node:test'
import { pino } from 'pino'
import { bearerToken, createAdminServer } from '../../src/admin/admin-server.ts'
import { Metrics } from '../../src/admin/metrics.ts'

const TOKEN = 'admin-token-7b2e91c4d0a65f38'
const servers: http.Server[] = []
let loopback: string
let exposedWithToken: string
let exposedNoToken: string

async function start(token: string | undefined, exposed?: boolean): Promise<string> {
  const server = createAdminServer({ metrics: new Metrics({ processMetrics: false }), logger: pino({ level: 'silent' }), token, unready: () => [], clear: () => 0, exposed })
  servers.push(server)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

before(async () => {
  // Bound to 127.0.0.1 (tests stay on loopback) and told it is exposed, as a 0.0.0.0 listener would decide by itself.
  loopback = await start(TOKEN)
  exposedWithToken = await start(TOKEN, true)
  exposedNoToken = await start(undefined, true)
})
after(() => {
  for (const s of servers) s.close()
})

const auth = (value: string) => ({ headers: { authorization: value } })

test('the Bearer scheme is case-insensitive and may be followed by several spaces (RFC 9110), and nothing else passes', () => {
  for (const h of [`Bearer ${TOKEN}`, `bearer ${TOKEN}`, `BEARER ${TOKEN}`, `bEaReR   ${TOKEN}`, `Bearer ${TOKEN}  `]) assert.equal(bearerToken(h), TOKEN, h)
  for (const h of [undefined, '', TOKEN, `Bearer${TOKEN}`, `Basic ${TOKEN}`, `Bearerx ${TOKEN}`, 'Bearer ', `Token ${TOKEN}`]) assert.notEqual(bearerToken(h), TOKEN, String(h))
})

test('POST /v1/cache/clear accepts "bearer <token>" in lower case', async () => {
  const res = await fetch(`${loopback}/v1/cache/clear`, { method: 'POST', body: '{}', ...auth(`bearer ${TOKEN}`) })
  assert.equal(res.status, 200)
  const wrong = await fetch(`${loopback}/v1/cache/clear`, { method: 'POST', body: '{}', ...auth(`bearer ${TOKEN}x`) })
  assert.equal(wrong.status, 401)
})

test('a server bound to loopback decides by itself that /metrics answers without a token', async () => {
  assert.equal((await fetch(`${loopback}/metrics`)).status, 200)
})

test('on an exposed admin listener /healthz and /readyz answer anyone, /metrics needs the token', async () => {
  assert.equal((await fetch(`${exposedWithToken}/healthz`)).status, 200)
  assert.equal((await fetch(`${exposedWithToken}/readyz`)).status, 200)
  const anonymous = await fetch(`${exposedWithToken}/metrics`)
  assert.equal(anonymous.status, 401)
  assert.equal(anonymous.headers.get('x-latchkey-error'), 'admin_unauthorized')
  assert.doesNotMatch(await anonymous.text(), /latchkey_/)
  assert.equal((await fetch(`${exposedWithToken}/metrics`, auth(`Bearer ${TOKEN}-wrong`))).status, 401)
  const scraped = await fetch(`${exposedWithToken}/metrics`, auth(`bearer ${TOKEN}`))
  assert.equal(scraped.status, 200)
  assert.match(await scraped.text(), /latchkey_/)
})

test('on an exposed admin listener without a token, /metrics is 403 admin_disabled and the probes still answer', async () => {
  assert.equal((await fetch(`${exposedNoToken}/healthz`)).status, 200)
  assert.equal((await fetch(`${exposedNoToken}/readyz`)).status, 200)
  const res = await fetch(`${exposedNoToken}/metrics`, auth(`Bearer ${TOKEN}`))
  assert.equal(res.status, 403)
  assert.equal(res.headers.get('x-latchkey-error'), 'admin_disabled')
  assert.match(await res.text(), /off loopback, \/metrics is disabled/)
})
