import assert from 'node:assert/strict'
import { test } from 'node:test'
import { plot, table } from '../../bench/fleet/report.ts'
import { runFleet, type FleetScenario } from '../../bench/fleet/sim.ts'

// The fleet simulation at a small scale (200 pods × 5 credentials, TTL 1 m so that cycles are
// short): the real SecretCache, keeper and retry loop on a virtual clock, against a modelled
// secret manager. Seeded, so every run is the same; the bounds leave room for the 1-second
// noise of a small fleet. `npm run bench:fleet` runs the same code at 10,000 pods.

const MIN = 60_000

const scenario: FleetScenario = {
  pods: 200,
  credentials: 5,
  ttlMs: MIN,
  maxStaleMs: 15 * MIN,
  bustCooldownMs: 10_000,
  refreshAhead: 0.8,
  rolloutMs: 60_000,
  requestIntervalMs: 10_000,
  probePeriodMs: 5_000,
  durationMs: 33 * MIN,
  seed: 11,
  // The quota scaled to the fleet as AWS Secrets Manager's 10,000/s is to 10,000 pods.
  secretManager: { quotaPerSec: 200, latencyMedianMs: 20, latencySigma: 0.6, outages: [{ from: 15 * MIN, to: 20 * MIN }] },
  rotation: { at: 31 * MIN, spreadMs: 10_000 },
  windows: [
    { name: 'steady', from: 3 * MIN, to: 15 * MIN },
    { name: 'outage', from: 15 * MIN, to: 20 * MIN },
    { name: 'recovery', from: 20 * MIN, to: 30 * MIN },
    { name: 'rotation', from: 31 * MIN, to: 33 * MIN },
  ],
}

test('a 200-pod fleet: spread refreshes, no unready pod or failed request through an outage shorter than maxStale, a rotation storm under the quota', async () => {
  const r = await runFleet(scenario)
  const w = Object.fromEntries(r.windows.map((x) => [x.name, x]))
  const { steady, outage, recovery, rotation } = w as Record<string, (typeof r.windows)[number]>
  assert.ok(steady && outage && recovery && rotation)

  // Steady state: about 5 keys × 200 pods per refresh interval, and no second much busier than the mean.
  assert.ok(steady.callsMean > 15 && steady.callsMean < 40, `steady mean ${steady.callsMean}/s`)
  assert.ok(steady.peakOverMean <= 2.5, `steady peak/mean ${steady.peakOverMean}`)
  assert.equal(steady.podsUnready, 0)

  // An outage shorter than maxStale: every pod stays ready and every request is served (stale).
  for (const x of [outage, recovery]) {
    assert.equal(x.podsUnready, 0, `${x.name}: pods unready`)
    assert.equal(x.requestsFailed, 0, `${x.name}: requests failed`)
  }
  assert.ok(outage.staleServed > 0, 'stale values were served during the outage')
  // No herd on recovery: the busiest second stays near the mean, as in steady state.
  assert.ok(recovery.peakOverMean <= 2.5, `recovery peak/mean ${recovery.peakOverMean}`)
  assert.ok(recovery.callsPeak <= 2.5 * steady.callsMean, `recovery peak ${recovery.callsPeak}/s vs steady mean ${steady.callsMean}/s`)
  // Logs: once per state change (a failure line and a stale line per credential), not per attempt.
  assert.ok(outage.logLinesPerPod <= 2 * scenario.credentials, `${outage.logLinesPerPod} log lines per pod during the outage`)

  // Rotation storm: every pod refetches once, within the quota, never twice per cooldown.
  assert.equal(rotation.throttled, 0)
  assert.ok(rotation.callsPeak <= scenario.secretManager.quotaPerSec, `rotation peak ${rotation.callsPeak}/s`)
  assert.equal(rotation.maxRefetchPerPodPerCooldown, 1)
  assert.equal(rotation.requestsFailed, 0)
  // A bust's refetch does not blink readiness.
  assert.equal(rotation.podsUnready, 0, 'rotation: pods unready')

  // The report renders every window and a plot of the whole run.
  assert.equal(table(r.windows).split('\n').length, 2 + r.windows.length)
  assert.match(plot(r.callsPerSecond, { marks: [{ label: 'outage', from: 15 * MIN, to: 20 * MIN }] }), /\^+ outage/)
})
