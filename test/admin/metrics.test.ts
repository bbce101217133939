import assert from 'node:assert/strict'
import test from 'node:test'
import { Counter, Histogram, Registry } from 'prom-client'
import { Metrics } from '../../src/admin/metrics.ts'

/** The lines of one metric family in an exposition, in order. */
function family(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(name + '_') || l.startsWith(name + '{') || l.startsWith(name + ' ') || l.endsWith(' ' + name + ' counter') || l.endsWith(' ' + name + ' histogram'))
}

test('the request counts kept as plain numbers are exposed exactly as prom-client counters and histograms would expose them', async () => {
  const m = new Metrics({ processMetrics: false })
  const ref = new Registry()
  const requests = new Counter({ name: 'latchkey_requests_total', help: 'Proxied requests by mode and outcome', labelNames: ['mode', 'outcome'], registers: [ref] })
  const duration = new Histogram({
    name: 'latchkey_request_duration_seconds',
    help: 'Time from request received to response headers sent',
    labelNames: ['mode'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [ref],
  })
  const uses = new Counter({ name: 'latchkey_credential_requests_total', help: 'x', labelNames: ['credential', 'outcome'], registers: [ref] })
  const hits = new Counter({ name: 'latchkey_cache_hits_total', help: 'x', labelNames: ['credential'], registers: [ref] })
  hits.labels({ credential: 'idle' }).inc(0)
  m.countCacheHit('idle', 0)
  // Every bucket edge exactly, values between them, beyond the last, and zero.
  const samples = [0, 0.001, 0.0011, 0.0025, 0.003, 0.01, 0.5, 0.75, 10, 10.5, 1e6]
  for (const [i, x] of samples.entries()) {
    const mode = i % 3 === 0 ? 'forward' : 'route'
    const outcome = i % 2 === 0 ? 'injected' : 'refused'
    m.countRequest(mode, outcome)
    requests.inc({ mode, outcome })
    m.observeDuration(mode, x)
    duration.observe({ mode }, x)
    m.countCredentialUse('api', outcome)
    uses.inc({ credential: 'api', outcome })
    m.countCacheHit('api')
    hits.inc({ credential: 'api' })
  }
  const [ours, theirs] = [await m.registry.metrics(), await ref.metrics()]
  for (const name of ['latchkey_requests_total', 'latchkey_credential_requests_total', 'latchkey_cache_hits_total']) {
    assert.deepEqual(family(ours, name).filter((l) => !l.startsWith('#')).sort(), family(theirs, name).filter((l) => !l.startsWith('#')).sort(), name)
  }
  const hist = (t: string) => family(t, 'latchkey_request_duration_seconds').filter((l) => !l.startsWith('#')).sort()
  assert.deepEqual(hist(ours), hist(theirs))
  assert.ok(ours.includes('# TYPE latchkey_request_duration_seconds histogram'))
  assert.ok(ours.includes('latchkey_cache_hits_total{credential="idle"} 0'), 'a credential with no hits yet is shown at 0')
  // A second scrape shows the same counts (the copy into prom-client does not add them twice).
  assert.equal(await m.registry.metrics(), ours)
})
