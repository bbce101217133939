/**
 * What the Public Suffix List costs at config load: each run is a fresh child process that
 * imports src/binding/host-pattern.ts and parses one host pattern. A plain pattern never loads
 * tldts (the baseline); a wildcard loads it, asks whether the suffix is public, and walks its
 * rule trie for suffixes below. Reports the medians of the parse time and of the growth of
 * the child's RSS across that parse, and the ratio to the baseline.
 *
 * `node bench/psl-load.ts`. Options (env): BENCH_PSL_RUNS (default 7, at most 30).
 */
import { execFile } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const RUNS = Math.min(30, Math.max(1, Number(process.env.BENCH_PSL_RUNS ?? 7)))
const run = promisify(execFile)

const CHILD = `
const url = ${JSON.stringify(new URL('../src/binding/host-pattern.ts', import.meta.url).href)}
const t0 = performance.now()
const { parseHostPattern } = await import(url)
const t1 = performance.now()
const rss0 = process.memoryUsage().rss
const r = parseHostPattern(process.argv[1])
const t2 = performance.now()
const rss1 = process.memoryUsage().rss
const again = performance.now(); parseHostPattern(process.argv[1].replace('*.', '*.x')); const t3 = performance.now()
process.stdout.write(JSON.stringify({ ok: r.ok, importMs: t1 - t0, parseMs: t2 - t1, nextParseMs: t3 - again, rssKiB: (rss1 - rss0) / 1024 }))
`

interface Sample { ok: boolean; importMs: number; parseMs: number; nextParseMs: number; rssKiB: number }

async function sample(pattern: string): Promise<Sample> {
  const r = await run(process.execPath, ['--conditions=development', '--input-type=module', '-e', CHILD, pattern], { cwd: ROOT })
  return JSON.parse(r.stdout) as Sample
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number

const cases = [
  ['plain host (baseline)', 'api.example.com'],
  ['wildcard, allowed', '*.example.com'],
  ['wildcard, public suffix', '*.co.th'],
  ['wildcard, suffixes below', '*.amazonaws.com'],
] as const
const rows: Array<{ case: string; pattern: string; ok: boolean; importMs: number; firstParseMs: number; nextParseMs: number; rssKiB: number }> = []
for (const [name, pattern] of cases) {
  const samples: Sample[] = []
  await sample(pattern) // warm the file system cache
  for (let i = 0; i < RUNS; i++) samples.push(await sample(pattern))
  rows.push({
    case: name,
    pattern,
    ok: samples[0]?.ok ?? false,
    importMs: median(samples.map((s) => s.importMs)),
    firstParseMs: median(samples.map((s) => s.parseMs)),
    nextParseMs: median(samples.map((s) => s.nextParseMs)),
    rssKiB: median(samples.map((s) => s.rssKiB)),
  })
}
const base = rows[0] as (typeof rows)[number]
console.log(`Public Suffix List cost at config load (${RUNS} runs each, medians; Node ${process.version})`)
console.log('| case | pattern | accepted | import host-pattern.ts ms | first parse ms | x baseline | next parse ms | RSS growth KiB |')
console.log('|---|---|---|---:|---:|---:|---:|---:|')
for (const r of rows) {
  console.log(`| ${r.case} | \`${r.pattern}\` | ${r.ok} | ${r.importMs.toFixed(1)} | ${r.firstParseMs.toFixed(2)} | ${(r.firstParseMs / base.firstParseMs).toFixed(0)} | ${r.nextParseMs.toFixed(3)} | ${Math.round(r.rssKiB)} |`)
}
