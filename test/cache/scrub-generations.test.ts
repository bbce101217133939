import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, mock, test } from 'node:test'
import { createBroker, type Broker } from '../../src/broker.ts'
import { Scrubber } from '../../src/redact/scrubber.ts'
import { captureLogs } from '../helpers/log-capture.ts'

// What the log scrubber still knows after the cache lets a value go: through the broker
// (cache + scrubber wired as in the daemon) with a file provider whose file a test rotates.

const OLD = 'scrub-generation-canary-old-5d1e'
const NEW = 'scrub-generation-canary-new-77b0'
const NEWER = 'scrub-generation-canary-newer-c3a9'
const R = '[REDACTED]'
let dir: string
let broker: Broker
const logs = captureLogs()

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-scrub-'))
  await writeFile(path.join(dir, 'token'), OLD, { mode: 0o600 })
  broker = createBroker({
    env: {},
    logStream: logs.stream,
    processMetrics: false,
    config: {
      log: { level: 'info' },
      cache: { bustCooldown: '0s' },
      providers: { f: { type: 'file', dir } },
      credentials: { app: { provider: 'f', ref: 'token', hosts: ['api.test'], inject: { type: 'bearer' } } },
    },
  })
  // Fetched once, not kept fresh in the background: the tests rotate the file between fetches themselves.
  assert.equal(await broker.cache.prefetch(broker.config.credentials.app!), true)
})

after(async () => {
  await broker?.providers.closeAll()
  broker?.cache.clear()
  broker?.scrubber.clear()
  await rm(dir, { recursive: true, force: true })
})

/** Log one line through the broker's logger and return it as written. */
function logged(text: string): string {
  logs.clear()
  broker.logger.info({ event: 'probe', detail: text }, 'probe')
  const line = logs.lines().at(-1) ?? ''
  return String(JSON.parse(line).detail)
}

const app = () => broker.config.credentials.app!

test('after a bust with a rotated value, a log line with the refused old value is still scrubbed', async () => {
  const used = await broker.cache.get(app())
  await writeFile(path.join(dir, 'token'), NEW)
  const fresh = await broker.cache.bust(app(), used.secret)
  assert.equal(fresh?.headerValue, `Bearer ${NEW}`)
  assert.equal(logged(`old ${OLD} new ${NEW} header Bearer ${OLD}`), `old ${R} new ${R} header ${R}`)
})

test('after an admin clear the dropped value stays scrubbed, and after the next fetch it is the previous generation', async () => {
  assert.equal(broker.cache.clear(app()), 1)
  assert.equal(logged(`cleared ${NEW} older ${OLD}`), `cleared ${R} older ${R}`)
  await writeFile(path.join(dir, 'token'), NEWER)
  assert.equal((await broker.cache.get(app())).headerValue, `Bearer ${NEWER}`)
  // NEW was dropped, then replaced: it is now the previous generation; OLD is two back.
  assert.equal(logged(`${NEWER} ${NEW} ${OLD}`), `${R} ${R} ${OLD}`)
})

test('a retired key stays scrubbed for its window, then is forgotten; a set within the window keeps it as the previous generation', () => {
  mock.timers.enable({ apis: ['setTimeout'] })
  try {
    const s = new Scrubber()
    s.set('k', ['retired-value-one'])
    s.retire('k', 1000)
    s.retire('k', 60_000) // a second retire does not extend the window
    mock.timers.tick(999)
    assert.equal(s.scrub('retired-value-one'), R)
    mock.timers.tick(1)
    assert.equal(s.scrub('retired-value-one'), 'retired-value-one', 'forgotten after the window')

    s.set('k', ['retired-value-two'])
    s.retire('k', 1000)
    s.set('k', ['retired-value-three'])
    mock.timers.tick(5000)
    assert.equal(s.scrub('retired-value-two retired-value-three'), `${R} ${R}`, 'the set cancelled the window')

    s.retire('k', 1000)
    s.set('k', ['retired-value-three']) // the same value came back
    mock.timers.tick(5000)
    assert.equal(s.scrub('retired-value-three'), R)
  } finally {
    mock.timers.reset()
  }
})
