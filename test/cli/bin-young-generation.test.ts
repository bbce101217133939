/**
 * The bin caps V8's young generation for the long-lived commands (docs/benchmarks.md): it
 * replaces itself, same pid, with a Node started with `--max-semi-space-size`, unless the user
 * set that flag or turned the re-exec off. Read from the running process's command line
 * (Linux /proc).
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { exitedWithin, runBin, startBin } from '../helpers/child.ts'

let dir: string
let config: string
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-bin-v8-'))
  config = path.join(dir, 'latchkey.json')
  await writeFile(
    config,
    JSON.stringify({ listen: '127.0.0.1:0', admin: { listen: '127.0.0.1:0' }, providers: { p: { type: 'env' } }, credentials: { c: { provider: 'p', ref: 'APP_TOKEN', hosts: ['api.example.com'], inject: { type: 'bearer' } } } }),
  )
})
after(() => rm(dir, { recursive: true, force: true }))

async function commandLineOfRun(env: Record<string, string>): Promise<string[]> {
  const bin = await startBin(['run', '-c', config], { env: { APP_TOKEN: 'app-token-0123456789', ...env } })
  try {
    return (await readFile(`/proc/${bin.child.pid}/cmdline`, 'utf8')).split('\0')
  } finally {
    bin.child.kill('SIGTERM')
    await exitedWithin(bin)
  }
}

test('latchkey run is the same process, started again with 2 MiB semi-spaces', { skip: process.platform !== 'linux' }, async () => {
  const argv = await commandLineOfRun({})
  assert.ok(argv.includes('--max-semi-space-size=2'), argv.join(' '))
  assert.ok(argv.includes('run') && argv.includes(config), 'the arguments are kept')
})

test('a --max-semi-space-size of the user in NODE_OPTIONS is left alone', { skip: process.platform !== 'linux' }, async () => {
  const argv = await commandLineOfRun({ NODE_OPTIONS: '--max-semi-space-size=8' })
  assert.ok(!argv.some((a) => a.startsWith('--max-semi-space-size')), argv.join(' '))
})

test('LATCHKEY_NO_REEXEC=1 runs latchkey without the re-exec', { skip: process.platform !== 'linux' }, async () => {
  const argv = await commandLineOfRun({ LATCHKEY_NO_REEXEC: '1' })
  assert.ok(!argv.some((a) => a.startsWith('--max-semi-space-size')), argv.join(' '))
})

test('a short command (version) prints the same output as before', async () => {
  const r = await runBin(['version'])
  assert.equal(r.code, 0)
  assert.match(r.stdout, /^latchkey \d+\.\d+\.\d+/)
  assert.equal(r.stderr, '', 'no experimental warning or other noise')
})

test('the long-lived commands cap how far the old generation grows between full GCs, unless node was given the flag', async () => {
  const { heapFlagFor } = await import('../../src/cli/main.ts')
  for (const command of ['run', 'exec', 'injector', 'echo']) assert.equal(heapFlagFor(command, []), '--heap-growing-percent=20', command)
  for (const command of ['check', 'doctor', 'version', 'ca', undefined]) assert.equal(heapFlagFor(command, []), undefined, String(command))
  assert.equal(heapFlagFor('run', ['--heap-growing-percent=50']), undefined, "the user's own value wins")
})

async function environOfRun(env: Record<string, string>): Promise<string[]> {
  const bin = await startBin(['run', '-c', config], { env: { APP_TOKEN: 'app-token-0123456789', ...env } })
  try {
    return (await readFile(`/proc/${bin.child.pid}/environ`, 'utf8')).split('\0')
  } finally {
    bin.child.kill('SIGTERM')
    await exitedWithin(bin)
  }
}

test('the re-exec runs with two malloc arenas, unless the environment says otherwise', { skip: process.platform !== 'linux' }, async () => {
  assert.ok((await environOfRun({})).includes('MALLOC_ARENA_MAX=2'))
  const own = await environOfRun({ MALLOC_ARENA_MAX: '4' })
  assert.ok(own.includes('MALLOC_ARENA_MAX=4') && !own.includes('MALLOC_ARENA_MAX=2'), "the user's value is kept")
})
