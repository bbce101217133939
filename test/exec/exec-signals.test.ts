/**
 * `latchkey exec` and signals, through the real bin: a signal at any point (start-up,
 * while the command runs, during clean-up) leaves no throw-away CA behind, and the command
 * sees each signal once. Each test gives exec a private TMPDIR, so "nothing left" is a
 * directory listing.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, test } from 'node:test'
import { assertNoCanary } from '../helpers/log-capture.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { baseEnv, curlMissing } from '../clients/spawn.ts'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const BIN = path.join(REPO, 'bin', 'latchkey.js')
const CANARY = 'canary-exec-sig-71c2e09b4d'
const CANARY_VAULT = 'canary-exec-sig-vault-3f81aa'

let dir: string
let up: Upstream
let config: string
const outputs: string[] = []

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-exec-sig-'))
  const ca = await createTestCa()
  await writeFile(path.join(dir, 'upstream-ca.pem'), ca.caPem)
  up = await startUpstream(await ca.issue(['localhost']))
  up.handle((req, res) => {
    // /slow keeps its response in flight, so exec's clean-up has to wait for it (up to its 2 s grace).
    if (req.url !== '/slow') return res.end('ok')
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('partial')
    setTimeout(() => res.end(), 10_000).unref()
  })
  config = path.join(dir, 'latchkey.yaml')
  await writeFile(
    config,
    [
      'upstream: { caFile: upstream-ca.pem }',
      'providers: { dev: { type: env } }',
      'credentials:',
      `  api: { provider: dev, ref: SIG_TOKEN, hosts: ["localhost:${up.port}"], inject: { type: bearer } }`,
      '',
    ].join('\n'),
  )
})

after(async () => {
  await up?.close()
  await rm(dir, { recursive: true, force: true })
  assertNoCanary(outputs, [CANARY, CANARY_VAULT])
})

interface Exec {
  child: ChildProcessWithoutNullStreams
  readonly stdout: string
  readonly stderr: string
  /** Resolves with the exit code, or the signal's name when exec itself was killed by one. */
  closed: Promise<number | string>
  /** Poll until `check` holds (bounded: 20 s). */
  until(what: string, check: () => boolean | Promise<boolean>): Promise<void>
}

/** Start the bin with a private TMPDIR; killed after 30 s whatever happens. */
async function startExec(args: string[], tmp: string, extra: Record<string, string> = {}): Promise<Exec> {
  const child = spawn(process.execPath, [BIN, 'exec', ...args], { env: baseEnv({ TMPDIR: tmp, SIG_TOKEN: CANARY, ...extra }), cwd: dir, stdio: 'pipe' })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const closed = new Promise<number | string>((resolve) =>
    child.once('close', (code, signal) => {
      clearTimeout(killer)
      outputs.push(stdout, stderr)
      resolve(code ?? signal ?? 'unknown')
    }),
  )
  return {
    child,
    get stdout() {
      return stdout
    },
    get stderr() {
      return stderr
    },
    closed,
    async until(what, check) {
      for (let i = 0; i < 800; i++) {
        if (await check()) return
        await new Promise((r) => setTimeout(r, 25))
      }
      assert.fail(`timed out waiting for ${what}; stderr: ${stderr}`)
    },
  }
}

async function privateTmp(name: string): Promise<string> {
  const tmp = path.join(dir, name)
  await mkdir(tmp)
  return tmp
}

test('SIGTERM while prefetch waits on a provider that never answers: exec exits 143, never runs the command, and deletes the throw-away CA', async () => {
  // A "Vault" that accepts connections and never says a word: prefetch waits (for its 10 s timeout, three times).
  const sockets: net.Socket[] = []
  const silent = net.createServer((s) => sockets.push(s))
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
  const tmp = await privateTmp('tmp-prefetch')
  const hanging = path.join(dir, 'hanging.yaml')
  await writeFile(
    hanging,
    [
      `providers: { vault: { type: vault, address: "https://127.0.0.1:${(silent.address() as net.AddressInfo).port}" } }`,
      'credentials:',
      '  api: { provider: vault, ref: secret/data/api, field: token, hosts: [api.example.com], inject: { type: bearer } }',
      '',
    ].join('\n'),
  )
  try {
    const e = await startExec(['-c', hanging, '--', 'sh', '-c', 'echo the-command-ran'], tmp, { VAULT_TOKEN: CANARY_VAULT })
    await e.until('the CA key and the provider call', async () => sockets.length > 0 && (await readdir(tmp)).some((d) => existsSync(path.join(tmp, d, 'ca', 'ca-key.pem'))))
    e.child.kill('SIGTERM')
    assert.equal(await e.closed, 143, e.stderr)
    assert.deepEqual(await readdir(tmp), [], 'no latchkey-exec-* directory (and no CA key) is left')
    assert.doesNotMatch(e.stdout, /the-command-ran/)
    assert.match(e.stderr, /SIGTERM received before the command started; it was not run/)
  } finally {
    for (const s of sockets) s.destroy()
    silent.close()
  }
})

test('a signal after the command exited, while exec drains an in-flight request, does not stop the clean-up: exit code stays the command\'s', { skip: curlMissing() }, async () => {
  const tmp = await privateTmp('tmp-drain')
  // The command leaves a request to /slow in flight through latchkey and exits 3.
  const script = `curl -s -o /dev/null --noproxy '' https://localhost:${up.port}/slow >/dev/null 2>&1 & sleep 1; echo exiting; exit 3`
  const received = up.received.length
  const e = await startExec(['-c', config, '--', 'sh', '-c', script], tmp)
  await e.until('the command to exit with a request in flight', () => e.stdout.includes('exiting') && up.received.slice(received).some((r) => r.url === '/slow'))
  // exec now waits up to 2 s for the request: the signal lands in that window.
  await new Promise((r) => setTimeout(r, 300))
  // Still draining when the signal is sent, or the test would prove nothing.
  assert.equal(e.child.exitCode, null, 'exec is still running (draining the in-flight request)')
  assert.ok(e.child.kill('SIGTERM'), 'the signal was delivered')
  assert.equal(await e.closed, 3, e.stderr)
  assert.deepEqual(await readdir(tmp), [])
})

const COUNT_SIGNALS = (signal: string) => `
let n = 0
process.on('${signal}', () => {
  if (n++ === 0) setTimeout(() => { console.log('${signal}=' + n); process.exit(0) }, 700)
})
setTimeout(() => { console.log('${signal}=' + n); process.exit(0) }, 8000)
const stat = require('node:fs').readFileSync('/proc/self/stat', 'utf8')
console.log('pgrp=' + stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2])
`

for (const signal of ['SIGINT', 'SIGQUIT'] as const) {
  test(`without a terminal, a ${signal} sent to exec alone (a supervisor's kill) reaches the command exactly once`, async () => {
    const tmp = await privateTmp(`tmp-${signal}`)
    const e = await startExec(['-c', config, '--', process.execPath, '-e', COUNT_SIGNALS(signal)], tmp)
    await e.until('the command', () => e.stdout.includes('pgrp='))
    e.child.kill(signal)
    assert.equal(await e.closed, 0, e.stderr)
    assert.match(e.stdout, new RegExp(`^${signal}=1$`, 'm'))
    assert.deepEqual(await readdir(tmp), [])
  })
}

function scriptMissing(): string | undefined {
  const r = spawnSync('script', ['--version'], { encoding: 'utf8', timeout: 10_000 })
  if (r.error) return `script (util-linux) not found (${(r.error as NodeJS.ErrnoException).code}): the terminal case cannot be run`
  if (!/util-linux/.test(r.stdout + r.stderr)) return 'script is not util-linux script (-qec is needed): the terminal case cannot be run'
  if (!existsSync('/proc/self/stat')) return 'no /proc: the test reads the process group from /proc/self/stat'
  return undefined
}

test('on a terminal, Ctrl-C (SIGINT to the foreground process group) reaches the command exactly once: exec does not send it again', { skip: scriptMissing() }, async () => {
  const tmp = await privateTmp('tmp-tty')
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`
  // `script` gives exec a pseudo-terminal as stdin and controlling terminal; `exec` keeps the shell out of the process group.
  const inner = ['exec', process.execPath, BIN, 'exec', '-c', config, '--', process.execPath, '-e', COUNT_SIGNALS('SIGINT')].map(quote).join(' ')
  const child = spawn('script', ['-qec', inner, '/dev/null'], { env: baseEnv({ TMPDIR: tmp, SIG_TOKEN: CANARY, SHELL: '/bin/sh' }), cwd: dir, stdio: 'pipe' })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c))
  child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c))
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const closed = new Promise<number | null>((r) => child.once('close', (code) => r(code)))
  try {
    let pgrp: number | undefined
    for (let i = 0; i < 800 && pgrp === undefined; i++) {
      pgrp = Number(/pgrp=(\d+)/.exec(out)?.[1]) || undefined
      if (pgrp === undefined) await new Promise((r) => setTimeout(r, 25))
    }
    assert.ok(pgrp !== undefined, `the command started under script: ${out}`)
    // What the terminal does on Ctrl-C: SIGINT to every process of the foreground group (exec and the command).
    process.kill(-pgrp, 'SIGINT')
    assert.equal(await closed, 0, out)
    assert.match(out, /^SIGINT=1\r?$/m, out)
    assert.deepEqual(await readdir(tmp), [], 'exec cleaned up after the command exited')
  } finally {
    clearTimeout(killer)
    child.stdin.end()
    outputs.push(out)
  }
})
