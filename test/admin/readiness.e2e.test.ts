import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import type { Daemon } from '../../src/daemon.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'
import { logWaiter } from '../helpers/log-waiter.ts'
import { startVaultServer, type VaultServer } from '../servers/vault-server.ts'

// Real daemons, a real file provider and a local Vault speaking Vault's HTTP API. The tests
// wait on the daemon's own log lines (events), never on sleeps.

// axios (under node-vault) honours proxy variables.
process.env.NO_PROXY = '127.0.0.1,localhost'

const CANARY_IDLE = 'canary-ready-idle-4e8a2c'
const CANARY_VAULT = 'canary-ready-vault-9b1f3d'

let dir: string
let vault: VaultServer
const daemons: Daemon[] = []

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-ready-'))
  await writeFile(path.join(dir, 'idle'), CANARY_IDLE)
  vault = await startVaultServer()
  vault.setSecret('secret/app', { token: CANARY_VAULT })
})

after(async () => {
  for (const d of daemons) await d.close()
  await vault?.close()
  await rm(dir, { recursive: true, force: true })
})

const readyz = async (d: Daemon) => {
  const res = await fetch(`${d.adminUrl}/readyz`)
  return { status: res.status, text: await res.text() }
}

test('an idle prefetched credential with a short TTL is refreshed with no traffic, so /readyz stays 200 across many TTLs', async () => {
  const capture = captureLogs()
  const logs = logWaiter(capture)
  // TTL 300 ms, maxStale 1 s: unrefreshed, the value could not be served after 1.3 s. Eight
  // refreshes take at least 8 × 0.5 × 0.8 × 0.9 × 300 ms > 1.3 s, so /readyz answering 200
  // after each of them needs the background refresh.
  const d = await startTestDaemon({
    baseDir: dir,
    logStream: logs.stream,
    config: {
      cache: { maxStale: '1s' },
      providers: { files: { type: 'file', dir: '.' } },
      credentials: { idle: { provider: 'files', ref: 'idle', hosts: ['idle.example.com'], inject: { type: 'bearer' }, ttl: '300ms' } },
    },
  })
  daemons.push(d)
  let from = 0
  for (let i = 0; i < 8; i++) {
    const fetched = await logs.next(`refresh ${i + 1}`, (r) => r.event === 'secret_fetched' && r.credential === 'idle', { from })
    from = fetched.index + 1
    const r = await readyz(d)
    assert.equal(r.status, 200, `after refresh ${i + 1}: ${r.text}`)
  }
  const metrics = await (await fetch(`${d.adminUrl}/metrics`)).text()
  assert.doesNotMatch(metrics, /latchkey_requests_total\{/, 'no request went through the proxy')
  assertNoCanary(capture.lines(), [CANARY_IDLE])
})

test('a provider down at start: /readyz is 503 naming the credential and its code; when it comes back the sidecar turns ready with no request sent', async () => {
  const capture = captureLogs()
  const logs = logWaiter(capture)
  vault.failNext(1_000_000, 503, /secret/)
  // TTL 2 s: the retry cap is min(30 s, max(1 s, 0.8 × TTL)) = 1.6 s.
  const capMs = 1600
  const d = await startTestDaemon({
    logStream: logs.stream,
    config: {
      cache: { fetchAttempts: 1 },
      providers: { vault: { type: 'vault', address: vault.url, auth: { method: 'token', token: vault.rootToken } } },
      credentials: { vaulted: { provider: 'vault', ref: 'secret/data/app', field: 'token', hosts: ['vaulted.example.com'], inject: { type: 'bearer' }, ttl: '2s' } },
    },
  })
  daemons.push(d)
  const down = await readyz(d)
  assert.equal(down.status, 503)
  const body = JSON.parse(down.text) as { status: string; waiting: string[]; errors: Array<{ credential: string; code: string }> }
  assert.deepEqual(body, { status: 'not_ready', waiting: ['vaulted'], errors: [{ credential: 'vaulted', code: 'provider_unavailable' }] })

  // A few background retries while it is down (no request is sent at any point).
  const failedBefore = vault.requestCount('/v1/secret/data/app')
  await logs.next('a third failed attempt', (r) => r.event === 'provider_retry_failed' && r.credential === 'vaulted' && Number(r.failures) >= 3)
  assert.ok(vault.requestCount('/v1/secret/data/app') > failedBefore, 'the keeper retried by itself')
  vault.recover()
  await logs.next('recovery', (r) => r.event === 'provider_recovered' && r.credential === 'vaulted')
  const up = await readyz(d)
  assert.equal(up.status, 200, up.text)

  const records = capture.records()
  const waits = records.filter((r) => (r.event === 'provider_error' || r.event === 'provider_retry_failed') && r.credential === 'vaulted').map((r) => Number(r.retryInMs))
  assert.ok(waits.length >= 3)
  for (const w of waits) assert.ok(w >= 0 && w <= capMs, `every background retry waits within the backoff bound (${w} ms ≤ ${capMs} ms)`)
  // Once per state change: one warning for the outage, one line for the recovery, whatever the number of attempts.
  assert.equal(records.filter((r) => r.event === 'provider_error' && r.credential === 'vaulted').length, 1)
  assert.equal(records.filter((r) => r.event === 'provider_recovered').length, 1)
  const metrics = await (await fetch(`${d.adminUrl}/metrics`)).text()
  assert.doesNotMatch(metrics, /latchkey_requests_total\{/, 'no request went through the proxy')
  assertNoCanary(capture.lines(), [CANARY_VAULT, vault.rootToken])
})

test('a held value that cannot be sent (a missing JSON field, a CR/LF) keeps /readyz 503 naming the credential and code; a fixed secret turns it ready with no request', async () => {
  const capture = captureLogs()
  const logs = logWaiter(capture)
  const CANARY_JSON = 'canary-ready-json-71c0de'
  const CANARY_CRLF = 'canary-ready-crlf-2a9e54'
  await writeFile(path.join(dir, 'fielded.json'), JSON.stringify({ other: CANARY_JSON }))
  await writeFile(path.join(dir, 'crlf'), `${CANARY_CRLF}\r\nX-Injected: 1`)
  const d = await startTestDaemon({
    baseDir: dir,
    logStream: logs.stream,
    config: {
      providers: { files: { type: 'file', dir: '.' } },
      credentials: {
        fielded: { provider: 'files', ref: 'fielded.json', field: 'token', hosts: ['fielded.example.com'], inject: { type: 'bearer' }, ttl: '300ms' },
        crlf: { provider: 'files', ref: 'crlf', hosts: ['crlf.example.com'], inject: { type: 'bearer' } },
      },
    },
  })
  daemons.push(d)
  const down = await readyz(d)
  assert.equal(down.status, 503, down.text)
  assert.deepEqual(JSON.parse(down.text), {
    status: 'not_ready',
    waiting: ['fielded', 'crlf'],
    errors: [
      { credential: 'fielded', code: 'invalid_secret' },
      { credential: 'crlf', code: 'header_value_invalid' },
    ],
  })

  // The secret is fixed where it lives; the next background refresh picks it up.
  await writeFile(path.join(dir, 'fielded.json'), JSON.stringify({ token: CANARY_JSON }))
  let r = await readyz(d)
  // A refresh under way may have read the file just before the write: the next one reads the fixed file.
  for (let i = 0; i < 4 && r.text.includes('fielded'); i++) {
    await logs.next('a refresh after the fix', (x) => x.event === 'secret_fetched' && x.credential === 'fielded', { from: logs.count() })
    r = await readyz(d)
  }
  assert.deepEqual(JSON.parse(r.text), { status: 'not_ready', waiting: ['crlf'], errors: [{ credential: 'crlf', code: 'header_value_invalid' }] })
  assertNoCanary([...capture.lines(), down.text, r.text], [CANARY_JSON, CANARY_CRLF])
})
