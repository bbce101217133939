import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const BIN = path.join(ROOT, 'bin', 'latchkey.js')

export interface Ran {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Run the latchkey bin with Node 24 (this process's node) and a controlled environment; bounded by `timeoutMs`. */
export function runBin(args: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH ?? '', NO_PROXY: '127.0.0.1,localhost', ...opts.env }, cwd: opts.cwd ?? ROOT })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20_000)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

/** Start `latchkey run` as a child and wait (bounded) for its `listening` log line. */
export async function startBin(args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}): Promise<{ child: ChildProcess; proxyUrl: string; adminUrl: string; output: () => string; exited: Promise<Ran> }> {
  const child = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH ?? '', ...opts.env }, cwd: opts.cwd ?? ROOT })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()))
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
  const exited = new Promise<Ran>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })))
  const urls = await new Promise<{ proxyUrl: string; adminUrl: string }>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL') // nothing is left running when the start-up fails
      reject(new Error(`latchkey did not start in 15 s:\n${stderr}`))
    }, 15_000)
    const check = () => {
      const line = stdout.split('\n').find((l) => l.includes('"event":"listening"'))
      if (line) {
        clearTimeout(timer)
        const rec = JSON.parse(line) as { proxy: string; admin: string }
        resolve({ proxyUrl: rec.proxy, adminUrl: rec.admin })
      }
    }
    child.stdout!.on('data', check)
    void exited.then((r) => reject(new Error(`latchkey exited early (${r.code}):\n${r.stderr}\n${r.stdout}`)))
  })
  return { child, ...urls, output: () => stdout + stderr, exited }
}

/** The child's end, bounded: past `ms` it is killed (SIGKILL) and its result still returned. */
export async function exitedWithin(bin: { child: ChildProcess; exited: Promise<Ran> }, ms = 10_000): Promise<Ran> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), ms)))
  const first = await Promise.race([bin.exited, late])
  clearTimeout(timer)
  if (first !== 'late') return first
  bin.child.kill('SIGKILL')
  return bin.exited
}
