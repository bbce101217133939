import type { WindowReport } from './sim.ts'

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

/** The per-window table (Markdown, so it can go into the docs as it is). */
export function table(rows: readonly WindowReport[]): string {
  const head = ['scenario', 'calls/s mean', 'peak (1 s)', 'peak/mean', 'throttled', 'pods unready', 'longest unready', 'slowest start→ready', 'requests', 'failed', 'stale served', 'log lines/pod', 'refetch/pod/cooldown']
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`]
  for (const w of rows) {
    lines.push(
      `| ${[
        w.name,
        fmt(w.callsMean, 1),
        fmt(w.callsPeak),
        fmt(w.peakOverMean, 2),
        fmt(w.throttled),
        fmt(w.podsUnready),
        `${fmt(w.longestUnreadyMs / 1000)} s`,
        w.slowestStartMs > 0 ? `${fmt(w.slowestStartMs / 1000, 1)} s` : '–',
        fmt(w.requests),
        fmt(w.requestsFailed),
        fmt(w.staleServed),
        fmt(w.logLinesPerPod, 1),
        w.maxRefetchPerPodPerCooldown > 0 ? fmt(w.maxRefetchPerPodPerCooldown) : '–',
      ].join(' | ')} |`,
    )
  }
  return lines.join('\n')
}

/**
 * Calls/s over time as text: one column per `width`-th of the run, its height the busiest
 * second in that column (so a one-second spike shows); `marks` label spans under the axis.
 */
export function plot(callsPerSecond: readonly number[], opts: { width?: number; height?: number; marks?: ReadonlyArray<{ label: string; from: number; to: number }> } = {}): string {
  const width = opts.width ?? 100
  const height = opts.height ?? 12
  const per = Math.ceil(callsPerSecond.length / width)
  const cols: number[] = []
  for (let i = 0; i < callsPerSecond.length; i += per) cols.push(Math.max(...callsPerSecond.slice(i, i + per)))
  const top = Math.max(1, ...cols)
  const rows: string[] = []
  for (let r = height; r >= 1; r--) {
    const level = (top * r) / height
    const label = r === height || r === Math.ceil(height / 2) ? fmt(level).padStart(7) : ' '.repeat(7)
    rows.push(`${label} ┤${cols.map((v) => (v >= level ? '█' : v >= level - top / height / 2 ? '▄' : ' ')).join('')}`)
  }
  rows.push(`${' '.repeat(7)} └${'─'.repeat(cols.length)}`)
  const minutes = callsPerSecond.length / 60
  const axis = Array.from({ length: cols.length }, () => ' ')
  for (let m = 0; m <= minutes; m += 10) {
    const col = Math.floor((m * 60) / per)
    const text = `${m}m`
    for (let k = 0; k < text.length && col + k < axis.length; k++) axis[col + k] = text[k] as string
  }
  rows.push(`${' '.repeat(9)}${axis.join('')}`)
  for (const mark of opts.marks ?? []) {
    const a = Math.floor(mark.from / 1000 / per)
    const b = Math.max(a + 1, Math.ceil(mark.to / 1000 / per))
    rows.push(`${' '.repeat(9)}${' '.repeat(a)}${'^'.repeat(b - a)} ${mark.label}`)
  }
  return rows.join('\n')
}
