const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const PATTERN = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/

/** Parse `500ms`, `30s`, `5m`, `1h` or a number of seconds into milliseconds; undefined if invalid. */
export function parseDuration(input: unknown): number | undefined {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? Math.round(input * 1000) : undefined
  if (typeof input !== 'string') return undefined
  const s = input.trim()
  if (/^\d+(?:\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000)
  const m = PATTERN.exec(s)
  if (!m) return undefined
  return Math.round(Number(m[1]) * (UNITS[m[2] as string] as number))
}

export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`
  if (ms % 60_000 === 0) return `${ms / 60_000}m`
  if (ms % 1000 === 0) return `${ms / 1000}s`
  return `${ms}ms`
}
