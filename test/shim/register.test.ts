/**
 * `node --import latchkey/register app.mjs`: a real Node child whose application code is
 * plain global `fetch`, configured only through environment variables.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, test } from 'node:test'
import { assertNoCanary } from '../helpers/log-capture.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { baseEnv, run, type RunResult } from '../clients/spawn.ts'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const CANARY = 'canary-register-51c8e2a0f7'
const CANARY_OLD = 'canary-reg-old-c3a9d871'
const CANARY_NEW = 'canary-reg-new-68f2b0e4'

let dir: string
let up: Upstream
let accept = CANARY_OLD
const outputs: string[] = []

/** The application: global fetch only; it prints status and what the upstream says it saw. */
const APP = `
const urls = process.argv.slice(2)
for (const url of urls) {
  if (url === 'wait') { await new Promise((r) => process.stdin.once('data', r)); continue }
  const r = await fetch(url)
  console.log(r.status, await r.text())
}
process.stdin.destroy()
`

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-register-'))
  const ca = await createTestCa()
  await writeFile(path.join(dir, 'upstream-ca.pem'), ca.caPem)
  await writeFile(path.join(dir, 'app.mjs'), APP)
  await writeFile(path.join(dir, 'rotating'), CANARY_OLD, { mode: 0o600 })
  up = await startUpstream(await ca.issue(['localhost', '127.0.0.1']))
  up.handle((req, res) => {
    if (req.url?.startsWith('/rot')) {
      const ok = req.headers['x-key'] === accept
      res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ path: req.url, ok }))
      return
    }
    const auth = req.headers.authorization
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ path: req.url, credential: auth === `Bearer ${CANARY}` ? 'present' : auth ? 'other' : 'absent' }))
  })
  await writeFile(
    path.join(dir, 'latchkey.yaml'),
    [
      'cache: { bustCooldown: 10ms }',
      'upstream: { caFile: upstream-ca.pem }',
      'providers:',
      '  dev: { type: env }',
      '  files: { type: file, dir: . }',
      'credentials:',
      `  api: { provider: dev, ref: APP_TOKEN, hosts: ["localhost:${up.port}"], inject: { type: bearer } }`,
      `  rot: { provider: files, ref: rotating, hosts: ["127.0.0.1:${up.port}"], inject: { type: header, header: X-Key } }`,
      '',
    ].join('\n'),
  )
})

after(async () => {
  await up?.close()
  await rm(dir, { recursive: true, force: true })
  assertNoCanary(outputs, [CANARY, CANARY_OLD, CANARY_NEW])
})

function keep(r: RunResult): RunResult {
  outputs.push(r.stdout, r.stderr)
  return r
}

/** The child trusts the upstream's test CA for the hosts latchkey does not handle (NODE_EXTRA_CA_CERTS). */
function appEnv(extra: Record<string, string>): Record<string, string> {
  return baseEnv({ NODE_EXTRA_CA_CERTS: path.join(dir, 'upstream-ca.pem'), NO_PROXY: '*', ...extra })
}

function lines(stdout: string): string[] {
  return stdout.trim().split('\n')
}

test('node --import latchkey/register with LATCHKEY_CONFIG: global fetch gets the header for the bound host, none for others', async () => {
  const r = keep(
    await run(process.execPath, ['--conditions=development', '--import', 'latchkey/register', path.join(dir, 'app.mjs'), `https://localhost:${up.port}/bound`, `https://127.0.0.1:${up.port}/other`], {
      cwd: REPO,
      env: appEnv({ LATCHKEY_CONFIG: path.join(dir, 'latchkey.yaml'), APP_TOKEN: CANARY }),
    }),
  )
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(lines(r.stdout), ['200 {"path":"/bound","credential":"present"}', '200 {"path":"/other","credential":"absent"}'])
  assert.equal(r.stderr, '', 'nothing logged at the default level warn')
})

test('NODE_OPTIONS=--import=latchkey/register in env-only mode works the same', async () => {
  const r = keep(
    await run(process.execPath, [path.join(dir, 'app.mjs'), `https://localhost:${up.port}/env-mode`], {
      cwd: REPO,
      env: appEnv({ NODE_OPTIONS: '--conditions=development --import=latchkey/register', LATCHKEY_ALLOWED_HOSTS: `localhost:${up.port}`, LATCHKEY_PROVIDER: 'env', LATCHKEY_SECRET: 'APP_TOKEN', APP_TOKEN: CANARY, NODE_EXTRA_CA_CERTS: path.join(dir, 'upstream-ca.pem') }),
    }),
  )
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(lines(r.stdout), ['200 {"path":"/env-mode","credential":"present"}'])
})

test('an upstream 401 after rotation is retried once by the shim, and LATCHKEY_LOG_LEVEL=info logs redacted lines to stderr', async () => {
  accept = CANARY_OLD
  const child = spawn(process.execPath, ['--conditions=development', '--import', 'latchkey/register', path.join(dir, 'app.mjs'), `https://127.0.0.1:${up.port}/rot/1`, 'wait', `https://127.0.0.1:${up.port}/rot/2`], {
    cwd: REPO,
    env: appEnv({ LATCHKEY_CONFIG: path.join(dir, 'latchkey.yaml'), APP_TOKEN: CANARY, LATCHKEY_LOG_LEVEL: 'info' }),
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
  const exited = new Promise<number | null>((r) => child.once('close', r))
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000)
  try {
    for (let i = 0; i < 200 && !stdout.includes('\n'); i++) await new Promise((r) => setTimeout(r, 50))
    assert.equal(lines(stdout)[0], '200 {"path":"/rot/1","ok":true}')
    // Rotate: the upstream now wants the new value, and the secret source holds it; the app's cache still has the old one.
    accept = CANARY_NEW
    await writeFile(path.join(dir, 'rotating'), CANARY_NEW)
    const before = up.received.length
    child.stdin.write('go\n')
    assert.equal(await exited, 0, stderr)
    assert.deepEqual(lines(stdout), ['200 {"path":"/rot/1","ok":true}', '200 {"path":"/rot/2","ok":true}'])
    assert.deepEqual(up.received.slice(before).map((x) => x.headers['x-key'] === CANARY_NEW), [false, true], 'one 401, one replay')
    const records = stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    assert.ok(records.some((l) => l.event === 'replay' && l.credential === 'rot'))
    assert.ok(records.some((l) => l.event === 'request' && l.mode === 'shim' && l.outcome === 'replayed' && l.status === 200))
  } finally {
    clearTimeout(killer)
    outputs.push(stdout, stderr)
  }
})

test('an invalid configuration stops the process at start with the problems listed', async () => {
  await writeFile(path.join(dir, 'bad.yaml'), 'credentials: { x: { provider: nope, ref: A, hosts: [], inject: { type: bearer } } }\n')
  const r = keep(await run(process.execPath, ['--conditions=development', '--import', 'latchkey/register', path.join(dir, 'app.mjs')], { cwd: REPO, env: appEnv({ LATCHKEY_CONFIG: path.join(dir, 'bad.yaml') }) }))
  assert.notEqual(r.code, 0)
  assert.match(r.stderr, /latchkey\/register: invalid configuration/)
  assert.match(r.stderr, /credentials\.x\.hosts/)
  assert.equal(r.stdout, '')
})

test('without LATCHKEY_CONFIG or LATCHKEY_ALLOWED_HOSTS the shim warns once and injects nothing', async () => {
  const r = keep(await run(process.execPath, ['--conditions=development', '--import', 'latchkey/register', path.join(dir, 'app.mjs'), `https://localhost:${up.port}/unconfigured`], { cwd: REPO, env: appEnv({ APP_TOKEN: CANARY }) }))
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(lines(r.stdout), ['200 {"path":"/unconfigured","credential":"absent"}'])
  assert.match(r.stderr, /^latchkey\/register: neither LATCHKEY_CONFIG nor LATCHKEY_ALLOWED_HOSTS is set; no credentials will be injected\n$/)
})

test('credentialed requests verify TLS even when the app sets NODE_TLS_REJECT_UNAUTHORIZED=0', async () => {
  // No upstream.caFile and no NODE_EXTRA_CA_CERTS: the upstream's certificate is untrusted.
  await writeFile(path.join(dir, 'no-ca.yaml'), `providers: { dev: { type: env } }\ncredentials: { api: { provider: dev, ref: APP_TOKEN, hosts: ["localhost:${up.port}"], inject: { type: bearer } } }\n`)
  const app = "for (const u of process.argv.slice(2)) { try { const r = await fetch(u); console.log(r.status, await r.text()) } catch (e) { console.log('failed', e.cause?.code ?? e.message) } }"
  await writeFile(path.join(dir, 'tolerant.mjs'), app)
  const before = up.received.length
  const r = keep(
    await run(process.execPath, ['--conditions=development', '--import', 'latchkey/register', path.join(dir, 'tolerant.mjs'), `https://localhost:${up.port}/bound`, `https://127.0.0.1:${up.port}/unbound`], {
      cwd: REPO,
      env: baseEnv({ LATCHKEY_CONFIG: path.join(dir, 'no-ca.yaml'), APP_TOKEN: CANARY, NODE_TLS_REJECT_UNAUTHORIZED: '0', NO_PROXY: '*' }),
    }),
  )
  const [bound, unbound] = lines(r.stdout)
  assert.match(bound ?? '', /^failed /, 'the credential is never sent over unverified TLS')
  assert.equal(unbound, '200 {"path":"/unbound","credential":"absent"}', "the app's own setting still applies to its other requests")
  assert.deepEqual(up.received.slice(before).map((x) => x.url), ['/unbound'])
})
