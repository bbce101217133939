/**
 * The read-only worked example of docs/policy.md, run as written: its config validates, the two
 * curl requests get the answers shown (the host is pointed at a local upstream), and the dry run
 * prints what the page prints.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { Writable } from 'node:stream'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { parse } from 'yaml'
import { doctor } from '../../src/cli/doctor.ts'
import { validateConfig } from '../../src/config/load.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { startUpstream } from '../helpers/upstream.ts'

const run = promisify(execFile)
const page = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../docs/policy.md')
const TOKEN = 'worked-example-token-1f2e3d4c'

/** The section of the page, and its fenced blocks in order. */
async function example(): Promise<{ yaml: string; consoles: string[] }> {
  const text = await readFile(page, 'utf8')
  const start = text.indexOf('## Worked example')
  const section = text.slice(start, text.indexOf('\n## ', start + 1))
  const blocks = [...section.matchAll(/```(\w+)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1], body: m[2] as string }))
  return { yaml: blocks.find((b) => b.lang === 'yaml')?.body ?? '', consoles: blocks.filter((b) => b.lang === 'console').map((b) => b.body) }
}

test('the worked example config is valid as written', async () => {
  const { yaml } = await example()
  const r = validateConfig(parse(yaml), { env: { MLFLOW_TRACKING_TOKEN: TOKEN }, baseDir: '.' })
  assert.ok(r.ok, r.ok ? '' : JSON.stringify(r.issues))
  assert.equal(r.config.credentials.mlflow?.rules?.length, 1)
})

test('the two requests of the worked example behave as shown', async () => {
  const { yaml, consoles } = await example()
  const requests = consoles[0] as string
  const denial = requests.split('\n').find((l) => l.startsWith('{"error"')) as string
  const raw = parse(yaml) as { credentials: { mlflow: Record<string, unknown> } }
  const up = await startUpstream()
  // The page's host, pointed at a local plain-HTTP upstream; everything else as written.
  raw.credentials.mlflow = { ...raw.credentials.mlflow, hosts: [`localhost:${up.port}`], insecure: true }
  const daemon = await startTestDaemon({ env: { MLFLOW_TRACKING_TOKEN: TOKEN }, config: raw, logStream: new Writable({ write: (_c, _e, cb) => cb() }) })
  try {
    const curl = async (args: string[]) => (await run('curl', ['-sS', '--noproxy', '', '-x', daemon.proxyUrl, ...args], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } })).stdout
    const get = await curl([`http://localhost:${up.port}/api/2.0/mlflow/runs/get?run_id=1`])
    assert.equal((JSON.parse(get) as { url: string }).url, '/api/2.0/mlflow/runs/get?run_id=1')
    assert.equal(up.received[0]?.headers.authorization, `Bearer ${TOKEN}`)
    const post = await curl(['-X', 'POST', `http://localhost:${up.port}/api/2.0/mlflow/runs/delete`])
    assert.equal(post, denial)
    assert.equal(up.received.length, 1, 'the refused request never reached the upstream')
  } finally {
    await daemon.close(1000)
    await up.close()
  }
})

test('the dry run of the worked example prints what the page shows', async () => {
  const { yaml, consoles } = await example()
  const lines = (consoles[1] as string).trimEnd().split('\n')
  const args = (lines[0] as string).replace(/^\$ latchkey doctor --dry-run /, '').split(' ')
  const r = validateConfig(parse(yaml), { env: { MLFLOW_TRACKING_TOKEN: TOKEN }, baseDir: '.' })
  assert.ok(r.ok)
  let out = ''
  const stdout = new Writable({ write: (c: Buffer, _e, cb) => ((out += c.toString()), cb()) })
  const code = await doctor(r.config, { env: {}, stdout, stderr: stdout, cwd: '.', signal: new AbortController().signal }, { method: args[0] as string, url: args[1] as string })
  assert.equal(code, 1)
  assert.equal(out.trimEnd(), lines.slice(1).join('\n'))
})
