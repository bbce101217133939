import { plot, table } from './fleet/report.ts'
import { fleetRuns } from './fleet/scenarios.ts'
import { runFleet, type WindowReport } from './fleet/sim.ts'

// npm run bench:fleet [-- --pods N]: the fleet simulation (the real SecretCache, keeper and
// retry loop on a virtual clock) at 10,000 pods × 5 credentials unless told otherwise.
// Prints a Markdown table per scenario window, an ASCII plot of provider calls/s, and
// whether each target of the lifecycle design holds. Exit 1 when one does not.

const arg = process.argv.indexOf('--pods')
const pods = arg > 0 ? Number(process.argv[arg + 1]) : 10_000
if (!Number.isInteger(pods) || pods <= 0) throw new Error('--pods takes a positive integer')

const rows: WindowReport[] = []
const checks: Array<{ what: string; ok: boolean }> = []
for (const run of fleetRuns(pods)) {
  const started = performance.now()
  const r = await runFleet(run.scenario)
  const took = (performance.now() - started) / 1000
  rows.push(...r.windows)
  const quota = run.scenario.secretManager.quotaPerSec
  process.stdout.write(`\n### ${pods.toLocaleString('en-US')} pods × ${run.scenario.credentials} credentials, ${run.title} (simulated ${Math.round(run.scenario.durationMs / 60_000)} min in ${took.toFixed(0)} s)\n\n`)
  process.stdout.write('Provider calls/s (busiest second per column):\n\n```\n')
  const marks = run.scenario.secretManager.outages.map((o) => ({ label: 'outage', from: o.from, to: o.to }))
  if (run.scenario.rotation) marks.push({ label: 'rotation', from: run.scenario.rotation.at, to: run.scenario.rotation.at + run.scenario.rotation.spreadMs })
  process.stdout.write(plot(r.callsPerSecond, { marks }) + '\n```\n')
  for (const w of r.windows) {
    if (/steady|recovery/.test(w.name)) checks.push({ what: `${run.title} ${w.name}: peak/mean ${w.peakOverMean.toFixed(2)} ≤ 2`, ok: w.peakOverMean <= 2 })
    if (/outage|recovery/.test(w.name)) checks.push({ what: `${run.title} ${w.name}: ${w.podsUnready} pods unready, ${w.requestsFailed} requests failed (outage < maxStale)`, ok: w.podsUnready === 0 && w.requestsFailed === 0 })
    if (/rotation/.test(w.name)) {
      checks.push({ what: `${run.title} ${w.name}: peak ${w.callsPeak}/s under the quota ${quota}/s, ${w.throttled} throttled`, ok: w.callsPeak <= quota && w.throttled === 0 })
      checks.push({ what: `${run.title} ${w.name}: ${w.podsUnready} pods unready, ${w.requestsFailed} requests failed (every pod's refetch after the 401)`, ok: w.podsUnready === 0 && w.requestsFailed === 0 })
      checks.push({ what: `${run.title} ${w.name}: ≤ 1 refetch per pod per cooldown (max ${w.maxRefetchPerPodPerCooldown})`, ok: w.maxRefetchPerPodPerCooldown <= 1 })
    }
  }
}
process.stdout.write(`\n### All windows\n\n${table(rows)}\n\n### Targets\n\n`)
for (const c of checks) process.stdout.write(`- ${c.ok ? 'met' : 'MISSED'}: ${c.what}\n`)
if (checks.some((c) => !c.ok)) process.exitCode = 1
