/**
 * The README quick start, run as a newcomer would: `npm start` (the package.json script, on this
 * Node) and then every command of the second block, each checked against what its comment
 * promises (`"key": "value"` appears, `no "key"` does not, a leading status is the status).
 * `npm ci` is left to test/install.test.ts. The demo's ports are fixed (8181–8183): when one is
 * taken on this machine the test is skipped with the reason, which names the listener.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { ROOT, exitedWithin } from './helpers/child.ts'

const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
const quick = readme.slice(readme.indexOf('## Quick start'), readme.indexOf('## Pick your way in'))
const blocks = [...quick.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => (m[1] as string).trim().split('\n'))
const hasCurl = spawnSync('curl', ['--version']).status === 0

interface Expectation {
  command: string
  status?: number
  present: string[]
  absent: string[]
}

/** What a command's comment promises. */
function expectation(line: string): Expectation {
  const [command = '', comment = ''] = line.split(/\s+#\s+/, 2)
  const absent = [...comment.matchAll(/\bno ("[\w-]+")/g)].map((m) => m[1] as string)
  const rest = comment.replace(/\bno "[\w-]+"/g, '')
  const present = [...rest.matchAll(/"[\w-]+": ?"[^"]*"/g)].map((m) => m[0])
  const status = /(?:^|\s)([1-5]\d\d)\s/.exec(rest)?.[1]
  return { command: command.trim(), present, absent, ...(status ? { status: Number(status) } : {}) }
}

test('the quick start is two blocks: install and start, then requests whose comments say what comes back', () => {
  assert.deepEqual(blocks[0]?.map((l) => l.split(/\s+#/)[0]?.trim()), ['npm ci', 'npm start'])
  const checks = (blocks[1] ?? []).map(expectation)
  assert.ok(checks.length >= 5, 'at least five requests')
  for (const c of checks) assert.ok(c.present.length + c.absent.length > 0, `"${c.command}" says what to expect`)
})

test('every command of the README quick start does what its comment says, against npm start', { skip: hasCurl ? false : 'curl is not installed' }, async (t) => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }
  const [node, ...args] = pkg.scripts.start.split(' ')
  assert.equal(node, 'node')
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? '' } })
  let out = ''
  child.stdout.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr.on('data', (c: Buffer) => (out += c.toString()))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: '' })))
  try {
    const started = await Promise.race([
      new Promise<'ready'>((resolve) => child.stdout.on('data', () => out.includes('"event":"ready"') && resolve('ready'))),
      exited.then(() => 'exited' as const),
    ])
    if (started === 'exited') {
      if (/address already in use/.test(out)) return t.skip(`a demo port is taken on this machine: ${out.trim().split('\n').at(-1)}`)
      assert.fail(`npm start exited:\n${out}`)
    }
    for (const c of (blocks[1] ?? []).map(expectation)) {
      // Words, with "double-quoted" ones kept whole (a header value holds a space).
      const argv = [...c.command.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? '')
      assert.equal(argv[0], 'curl')
      const r = spawnSync('curl', ['-s', '-w', '\n%{http_code}', '--noproxy', '', ...argv.slice(1)], { encoding: 'utf8', timeout: 15_000, env: { PATH: process.env.PATH ?? '' } })
      const body = r.stdout.slice(0, r.stdout.lastIndexOf('\n'))
      const status = Number(r.stdout.slice(r.stdout.lastIndexOf('\n') + 1))
      if (c.status !== undefined) assert.equal(status, c.status, `${c.command}: status`)
      for (const p of c.present) assert.ok(body.includes(p), `${c.command}: the answer has ${p}\n${body}`)
      for (const a of c.absent) assert.ok(!body.toLowerCase().includes(a.toLowerCase()), `${c.command}: the answer has no ${a}\n${body}`)
    }
    assert.doesNotMatch(out, /"level":40/, 'the demo logs no warning about its own files')
  } finally {
    child.kill('SIGTERM')
    await exitedWithin({ child, exited })
  }
})
