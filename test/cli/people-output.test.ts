/**
 * Output made for people: on a terminal (a real pty, through `script`) the daemon prints
 * readable lines with level names, a start-up summary (credential → provider:ref → hosts,
 * routes, listeners), no JSON, and no secret.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, test } from 'node:test'
import { assertNoCanary } from '../helpers/log-capture.ts'
import { BIN } from '../helpers/child.ts'
import { startUpstream } from '../helpers/upstream.ts'

const hasScript = spawnSync('script', ['--version']).status === 0
const CANARY = 'canary-pretty-7f3e9a1c'
const dir = mkdtempSync(path.join(tmpdir(), 'latchkey-pretty-'))
after(() => rmSync(dir, { recursive: true, force: true }))

test('on a terminal the daemon prints readable lines with a start-up summary, no JSON and no secret', { skip: hasScript ? false : 'script(1) is not installed: no pty to run under' }, async () => {
  const upstream = await startUpstream()
  const config = path.join(dir, 'latchkey.yaml')
  writeFileSync(
    config,
    [
      'listen: 127.0.0.1:0',
      'admin: { listen: 127.0.0.1:0 }',
      'providers: { dev: { type: env } }',
      'credentials:',
      `  api: { provider: dev, ref: PRETTY_TOKEN, hosts: ["127.0.0.1:${upstream.port}"], inject: { type: bearer }, insecure: true }`,
      `routes: { up: { upstream: "http://127.0.0.1:${upstream.port}" } }`,
      '',
    ].join('\n'),
  )
  // script(1) gives the child a pty for stdout, as a terminal would; -e keeps its exit code.
  const command = [process.execPath, BIN, 'run', '-c', config].map((a) => `'${a}'`).join(' ')
  const child = spawn('script', ['-qec', command, '/dev/null'], { env: { PATH: process.env.PATH ?? '', PRETTY_TOKEN: CANARY, NO_COLOR: '1', TERM: 'dumb' }, detached: true })
  let out = ''
  child.stdout.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr.on('data', (c: Buffer) => (out += c.toString()))
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()))
  try {
    const proxy = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listening line in 15 s:\n${out}`)), 15_000)
      child.stdout.on('data', () => {
        const m = /listening: proxy (http:\/\/127\.0\.0\.1:\d+)/.exec(out)
        if (m && out.includes('all prefetched credentials hold a value')) {
          clearTimeout(timer)
          resolve(m[1] as string)
        }
      })
    })
    const status = await new Promise<number>((resolve, reject) => http.get(`${proxy}/up/hello`, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on('error', reject))
    assert.equal(status, 200)
    await new Promise<void>((resolve) => {
      const wait = () => (/INFO.*event=request/.test(out) ? resolve() : setTimeout(wait, 20))
      wait()
    })
  } finally {
    process.kill(-child.pid!, 'SIGTERM') // the process group this test started: script and latchkey
    await closed
    await upstream.close()
  }
  const lines = out.split(/\r?\n/).filter((l) => l.trim() !== '')
  assert.ok(upstream.received.at(-1)?.headers.authorization === `Bearer ${CANARY}`, 'the credential was injected, so the scrubber held it')
  assert.ok(lines.some((l) => /^\[\d\d:\d\d:\d\d\] INFO: credential api: dev:PRETTY_TOKEN → 127\.0\.0\.1:\d+/.test(l)), `the summary names credential → provider:ref → hosts:\n${out}`)
  assert.ok(lines.some((l) => /INFO: route \/up → http:\/\/127\.0\.0\.1:\d+/.test(l)), 'and each route')
  assert.ok(lines.some((l) => /INFO: listening: proxy http:\/\/127\.0\.0\.1:\d+, admin http:\/\/127\.0\.0\.1:\d+/.test(l)), 'and the listeners')
  const json = (l: string) => {
    try {
      return typeof JSON.parse(l) === 'object'
    } catch {
      return false
    }
  }
  for (const l of lines) assert.ok(!json(l.trim()) && !l.includes('"level":'), `a JSON line on a terminal: ${l}`)
  assert.ok(lines.some((l) => /^\[\d\d:\d\d:\d\d\] INFO: /.test(l)), 'level names, not numbers')
  assertNoCanary(out, [CANARY])
})
