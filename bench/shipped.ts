/**
 * latchkey as a user runs it, for the bench: the built bundle behind the real bin, in the layout
 * npm installs (`<dir>/node_modules/latchkey/{bin,dist,package.json}`), started as a child
 * process with this process's Node. The package's own `node_modules` is a link to the clone's,
 * so nothing is downloaded. `BENCH_FROM_SOURCES=1` runs `bin/latchkey.js` of the clone instead
 * (the TypeScript sources), to compare.
 *
 * Also the `/proc` readers the bench uses for a child: RSS and CPU time.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, readdirSync, statSync, symlinkSync } from 'node:fs'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from './load.ts'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const FROM_SOURCES = process.env.BENCH_FROM_SOURCES === '1'

/**
 * Install the built package into `dir` (once per dir) and return the bin to run. Builds `dist/`
 * first when it is missing or older than the newest file of `src/` or `build/`.
 */
export async function installShipped(dir: string): Promise<{ bin: string; label: string }> {
  if (FROM_SOURCES) return { bin: path.join(ROOT, 'bin', 'latchkey.js'), label: 'sources (bin/latchkey.js on src/)' }
  const dist = path.join(ROOT, 'dist', 'cli', 'latchkey.js')
  if (!existsSync(dist) || statSync(dist).mtimeMs < Math.max(newestMtime(path.join(ROOT, 'src')), newestMtime(path.join(ROOT, 'build')))) {
    const { buildDist } = await import('../build/build.ts')
    await buildDist()
  }
  const pkg = path.join(dir, 'node_modules', 'latchkey')
  if (!existsSync(pkg)) {
    mkdirSync(pkg, { recursive: true })
    for (const f of ['bin', 'dist', 'package.json']) cpSync(path.join(ROOT, f), path.join(pkg, f), { recursive: true })
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'), 'dir')
  }
  return { bin: path.join(pkg, 'bin', 'latchkey.js'), label: 'built package (node_modules/latchkey/bin/latchkey.js → dist/)' }
}

function newestMtime(dir: string): number {
  let newest = 0
  for (const f of readdirSync(dir, { recursive: true, encoding: 'utf8' })) newest = Math.max(newest, statSync(path.join(dir, f)).mtimeMs)
  return newest
}

export interface Daemon {
  pid: number
  proxyUrl: string
  adminUrl: string
  /** Spawn to the first `/readyz` 200, ms. */
  readyMs: number
  child: ChildProcess
  stop: () => Promise<void>
}

/**
 * Start `latchkey run -c <dir>/<name>.json` from `bin` with `config` (listen and admin ports
 * are filled in) and wait for `/readyz`. Polls every 5 ms, so the ready time is exact to that.
 */
export async function startDaemon(bin: string, dir: string, config: Record<string, unknown>, env: Record<string, string>, opts: { nodeArgs?: string[]; timeoutMs?: number } = {}): Promise<Daemon> {
  const [port, adminPort] = [await freePort(), await freePort()]
  const file = path.join(dir, `latchkey-${port}.json`)
  await writeFile(file, JSON.stringify({ listen: `127.0.0.1:${port}`, admin: { listen: `127.0.0.1:${adminPort}` }, log: { level: 'warn' }, ...config }))
  const t0 = performance.now()
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), bin, 'run', '-c', file], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '', HOME: dir, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(t)
    }
  }
  const deadline = t0 + (opts.timeoutMs ?? 20_000)
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`latchkey exited before ready: ${stderr.slice(0, 500)}`)
      if (performance.now() > deadline) throw new Error(`latchkey not ready in ${opts.timeoutMs ?? 20_000} ms: ${stderr.slice(0, 500)}`)
      const ok = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then(
        async (r) => {
          await r.body?.cancel()
          return r.status === 200
        },
        () => false,
      )
      if (ok) break
      await new Promise((r) => setTimeout(r, 5))
    }
  } catch (err) {
    await stop()
    throw err
  }
  return { pid: child.pid!, proxyUrl: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${adminPort}`, readyMs: performance.now() - t0, child, stop }
}

/** VmRSS and VmHWM (peak) of a process, MiB. */
export async function memoryOf(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kib = (k: string) => {
    const v = new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]
    if (v === undefined) throw new Error(`no ${k} in /proc/${pid}/status`)
    return Number(v)
  }
  return { rss: kib('VmRSS') / 1024, hwm: kib('VmHWM') / 1024 }
}

/**
 * On-CPU time of a process in seconds, from the scheduler's nanosecond counters
 * (`/proc/PID/task/TID/schedstat`): `main` is the main thread (where JavaScript runs: what
 * `process.cpuUsage` would count minus the helper threads), `total` all of its threads (GC
 * helpers, libuv's pool). The same reader for latchkey, the minimal proxy and nginx.
 */
export async function cpuOf(pid: number): Promise<{ main: number; total: number }> {
  const read = async (tid: string) => Number((await readFile(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').catch(() => '0')).split(' ')[0]) / 1e9
  const tids = await readdir(`/proc/${pid}/task`).catch(() => [] as string[])
  const times = await Promise.all(tids.map(read))
  return { main: await read(String(pid)), total: times.reduce((a, b) => a + b, 0) }
}
