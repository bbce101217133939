import { spawn, spawnSync } from 'node:child_process'

export interface RunResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/**
 * A minimal environment for a client child: no proxy or CA variables leak in from the
 * test runner's environment; each test sets exactly what the client should see.
 */
export function baseEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {}
  for (const k of ['PATH', 'HOME', 'LANG', 'TMPDIR', 'SYSTEMROOT', 'PYENV_ROOT', 'PYENV_VERSION']) {
    const v = process.env[k]
    if (v !== undefined) env[k] = v
  }
  return { ...env, ...extra }
}

/** Run a command to completion (killed after `timeoutMs`) and collect its output. */
export function run(cmd: string, args: readonly string[], o: { env: Record<string, string>; cwd?: string; timeoutMs?: number; input?: string }): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: o.env, cwd: o.cwd, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
    // A command that exits at once closes its stdin first: EPIPE here is not the test's concern.
    child.stdin.on('error', () => undefined)
    try {
      child.stdin.end(o.input ?? '')
    } catch {
      // same as above
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 20_000)
    child.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

/** Whether `python3` with the given modules can be run (once per process). */
const pythonChecks = new Map<string, string | undefined>()
export function pythonMissing(modules: string): string | undefined {
  if (!pythonChecks.has(modules)) {
    const r = spawnSync('python3', ['-c', `import ${modules}`], { env: baseEnv(), encoding: 'utf8', timeout: 10_000 })
    pythonChecks.set(modules, r.error ? `python3 not found (${(r.error as NodeJS.ErrnoException).code})` : r.status !== 0 ? `python3 cannot import ${modules}` : undefined)
  }
  return pythonChecks.get(modules)
}

/** Whether `curl` can be run. */
export function curlMissing(): string | undefined {
  const r = spawnSync('curl', ['--version'], { encoding: 'utf8', timeout: 10_000 })
  return r.error ? `curl not found (${(r.error as NodeJS.ErrnoException).code})` : undefined
}
