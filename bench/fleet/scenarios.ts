import type { FleetScenario } from './sim.ts'

const MIN = 60_000

/**
 * The fleet runs of the scenarios, at `pods` pods × 5 credentials:
 * - TTL 5 m: a rollout over 60 s, an hour of steady state, a 5-minute provider outage and its
 *   recovery, then a rotation after which every pod sees a 401 within 10 s;
 * - TTL 1 m: the same fleet's rollout, steady state and outage.
 * The secret manager answers in 20 ms median (log-normal, p99 ≈ 80 ms) and serves
 * 10,000 calls/s (AWS Secrets Manager's GetSecretValue quota per region), scaled with the fleet.
 */
export function fleetRuns(pods: number): Array<{ title: string; scenario: FleetScenario }> {
  const base = {
    pods,
    credentials: 5,
    maxStaleMs: 15 * MIN,
    bustCooldownMs: 10_000,
    refreshAhead: 0.8,
    rolloutMs: 60_000,
    requestIntervalMs: 10_000,
    probePeriodMs: 5_000,
    seed: 7,
  }
  const model = (outageAt: number) => ({ quotaPerSec: Math.max(1, Math.round((10_000 * pods) / 10_000)), latencyMedianMs: 20, latencySigma: 0.6, outages: [{ from: outageAt, to: outageAt + 5 * MIN }] })
  return [
    {
      title: 'TTL 5m',
      scenario: {
        ...base,
        ttlMs: 5 * MIN,
        durationMs: 85 * MIN,
        secretManager: model(65 * MIN),
        rotation: { at: 82 * MIN, spreadMs: 10_000 },
        windows: [
          { name: 'rollout (60 s)', from: 0, to: 2 * MIN },
          { name: 'steady state (1 h)', from: 5 * MIN, to: 65 * MIN },
          { name: '5 m outage', from: 65 * MIN, to: 70 * MIN },
          { name: 'recovery (10 m)', from: 70 * MIN, to: 80 * MIN },
          { name: 'rotation storm', from: 82 * MIN, to: 84 * MIN },
        ],
      },
    },
    {
      title: 'TTL 1m',
      scenario: {
        ...base,
        ttlMs: 1 * MIN,
        durationMs: 50 * MIN,
        secretManager: model(35 * MIN),
        windows: [
          { name: 'rollout, TTL 1m', from: 0, to: 2 * MIN },
          { name: 'steady, TTL 1m (30 m)', from: 5 * MIN, to: 35 * MIN },
          { name: '5 m outage, TTL 1m', from: 35 * MIN, to: 40 * MIN },
          { name: 'recovery, TTL 1m', from: 40 * MIN, to: 50 * MIN },
        ],
      },
    },
  ]
}
