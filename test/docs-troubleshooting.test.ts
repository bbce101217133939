/**
 * docs/troubleshooting.md says its messages are the exact ones latchkey prints: for the start-up
 * failures, produce each through the real bin and find the page's quote in the output.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'

const REPO = path.resolve(import.meta.dirname, '..')
const BIN = path.join(REPO, 'bin', 'latchkey.js')
let dir: string
let page: string

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-troubleshooting-'))
  page = await readFile(path.join(REPO, 'docs', 'troubleshooting.md'), 'utf8')
})
after(() => rm(dir, { recursive: true, force: true }))

/** The quoted message of the row whose first cell starts with `prefix`. */
function quoted(prefix: string): string {
  const row = page.split('\n').find((l) => l.startsWith(`| \`${prefix}`))
  assert.ok(row, `a row quoting ${prefix}`)
  return (/^\| `([^`]+)`/.exec(row) as RegExpExecArray)[1] as string
}

/** The bin's output with its lines joined as the page writes them in one cell. */
function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; text: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: typeof err?.code === 'number' ? err.code : 0, text: `${stdout}\n${stderr}`.split('\n').map((l) => l.trim()).filter(Boolean).join(' ') })
    })
  })
}

const CREDENTIAL = ['providers: { dev: { type: env } }', 'credentials:', '  a: { provider: dev, ref: A, hosts: [a.example.com], inject: { type: bearer } }']

test('the misspelt-key row quotes what check prints', async () => {
  const file = path.join(dir, 'tll.yaml')
  await writeFile(file, ['cache: { tll: 5m }', ...CREDENTIAL, ''].join('\n'))
  const r = await run(['check', '-c', file])
  assert.equal(r.code, 2)
  assert.ok(r.text.includes(quoted('invalid configuration (1 problem)')), r.text)
})

test('the address-in-use row quotes what run prints', async () => {
  const holder = net.createServer()
  await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r))
  const port = (holder.address() as net.AddressInfo).port
  try {
    const file = path.join(dir, 'inuse.yaml')
    await writeFile(file, [`listen: 127.0.0.1:${port}`, 'admin: { listen: "127.0.0.1:0" }', ...CREDENTIAL, ''].join('\n'))
    const r = await run(['run', '-c', file], { A: 'troubleshooting-value' })
    assert.equal(r.code, 1)
    assert.ok(r.text.includes(quoted('latchkey: cannot start: proxy listener').replace('127.0.0.1:8181', `127.0.0.1:${port}`)), r.text)
  } finally {
    holder.close()
  }
})
