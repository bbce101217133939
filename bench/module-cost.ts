/**
 * What each package costs at ready: `node bench/module-cost.ts` (`npm run bench:modules`).
 *
 * 1. Starts latchkey as shipped (bench/shipped.ts) with an env-provider config, with a load
 *    hook that records every package it imports, and reads its RSS at ready.
 * 2. For each of those packages, in a fresh Node with the shipped V8 flags and one idle HTTP
 *    server (what every latchkey process has; `node:http` read as the bundle reads it): RSS with the package alone over the bare
 *    process, and its marginal cost — RSS with every package minus RSS with every package but
 *    that one. The two differ because packages share what they pull in (Node's own `tls`,
 *    `http2`, the compiler's code pages): the marginal figure is what leaving a package out
 *    would save.
 * Each figure is the median of BENCH_MODULE_RUNS (default 3) processes. Linux only.
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { installShipped, memoryOf, ROOT } from './shipped.ts'
import { freePort } from './load.ts'

const RUNS = Math.max(1, Number(process.env.BENCH_MODULE_RUNS ?? 3))
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN

async function v8Flags(): Promise<string[]> {
  const m = /SEMI_SPACE_MIB = (\d+)/.exec(await readFile(path.join(ROOT, 'bin', 'latchkey.js'), 'utf8'))
  return m ? [`--max-semi-space-size=${m[1]}`] : []
}

/** The packages a shipped `latchkey run` imports by the time it is ready. */
async function packagesAtReady(dir: string): Promise<{ packages: string[]; rss: number }> {
  const { bin } = await installShipped(dir)
  const hook = path.join(dir, 'hook.mjs')
  await writeFile(
    hook,
    `import { registerHooks } from 'node:module'
import { writeSync } from 'node:fs'
const seen = new Set()
registerHooks({ load(url, ctx, next) { const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\/(?!.*node_modules)/.exec(url); if (m && m[1] !== 'latchkey' && !seen.has(m[1])) { seen.add(m[1]); writeSync(2, 'PKG ' + m[1] + '\\n') } return next(url, ctx) } })
`,
  )
  const [port, adminPort] = [await freePort(), await freePort()]
  const config = path.join(dir, 'latchkey.json')
  await writeFile(config, JSON.stringify({ listen: `127.0.0.1:${port}`, admin: { listen: `127.0.0.1:${adminPort}` }, log: { level: 'warn' }, providers: { p: { type: 'env' } }, credentials: { c: { provider: 'p', ref: 'API_TOKEN', hosts: ['api.example.com'], inject: { type: 'bearer' } } } }))
  const child = spawn(process.execPath, [...(await v8Flags()), '--import', hook, bin, 'run', '-c', config], { env: { PATH: process.env.PATH ?? '', API_TOKEN: 'env-secret-value-0123456789' }, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()))
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  try {
    for (let i = 0; ; i++) {
      if (child.exitCode !== null || i > 2000) throw new Error(`latchkey did not become ready: ${err.slice(0, 300)}`)
      const ok = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.status === 200, () => false)
      if (ok) break
      await new Promise((r) => setTimeout(r, 10))
    }
    const { rss } = await memoryOf(child.pid!)
    const packages = [...err.matchAll(/^PKG (\S+)$/gm)].map((m) => m[1]!)
    return { packages: [...new Set(packages)].sort(), rss }
  } finally {
    child.kill('SIGTERM')
    await exited
  }
}

/** RSS (MiB) of a Node that imports `packages` (resolved from the clone) and listens once. */
async function rssWith(dir: string, packages: string[], flags: string[]): Promise<number> {
  // A file, not \`-e\`: Node 24 evaluates -e code through its TypeScript stripper, which would be counted.
  const script = `${packages.map((p) => `await import(${JSON.stringify(import.meta.resolve(p))})`).join(';')}
const s = process.getBuiltinModule('node:http').createServer().listen(0, '127.0.0.1')
await new Promise((r) => setTimeout(r, 200))
process.stdout.write(/VmRSS:\\s+(\\d+)/.exec(process.getBuiltinModule('node:fs').readFileSync('/proc/self/status', 'utf8'))[1])
s.close()`
  const runs: number[] = []
  for (let i = 0; i < RUNS; i++) {
    const file = path.join(dir, 'probe.mjs')
    await writeFile(file, script)
    const r = spawnSync(process.execPath, [...flags, file], { cwd: dir, encoding: 'utf8', timeout: 30_000 })
    if (r.status !== 0) throw new Error(`importing ${packages.join(', ')} failed: ${r.stderr.slice(0, 300)}`)
    runs.push(Number(r.stdout) / 1024)
  }
  return median(runs)
}

export async function moduleCost(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'latchkey-bench-modules-'))
  try {
    const flags = await v8Flags()
    const { packages, rss } = await packagesAtReady(dir)
    // Only the entry points latchkey imports: a package's own dependencies are counted with it.
    const deps = (JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies
    const direct = packages.filter((p) => p in deps)
    const bare = await rssWith(dir, [], flags)
    const all = await rssWith(dir, direct, flags)
    const lines: string[] = []
    for (const p of direct) {
      const alone = (await rssWith(dir, [p], flags)) - bare
      const marginal = all - (await rssWith(dir, direct.filter((x) => x !== p), flags))
      lines.push(`| ${p} | ${alone.toFixed(1)} | ${marginal.toFixed(1)} |`)
    }
    return (
      `latchkey as shipped, env provider, at ready: ${rss.toFixed(1)} MiB RSS (${flags.join(' ')}). Packages loaded: ${packages.join(', ')}.\n` +
      `Bare Node with one idle server: ${bare.toFixed(1)} MiB; with every dependency above: ${all.toFixed(1)} MiB.\n\n` +
      '| package (with what it loads) | alone over bare, MiB | marginal (all minus all but it), MiB |\n|---|---:|---:|\n' +
      lines.join('\n')
    )
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.join(ROOT, 'bench', 'module-cost.ts')) {
  process.stdout.write(`\nlatchkey module cost at ready — Node ${process.version}, ${RUNS} runs per figure\n\n${await moduleCost()}\n`)
}
