/**
 * Where `latchkey exec` takes its configuration from when there is no `-c` ($LATCHKEY_CONFIG,
 * ./latchkey.yaml, env-only mode), its exit codes for a bad or unusable configuration, a
 * config's own interception CA, and `--log-level`. Through the real bin; the commands are curl
 * calls to a local HTTPS upstream (NO_PROXY overridden inside, as the README shows).
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, test } from 'node:test'
import { assertNoCanary } from '../helpers/log-capture.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { baseEnv, curlMissing, run, type RunResult } from '../clients/spawn.ts'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const BIN = path.join(REPO, 'bin', 'latchkey.js')
const CANARY = 'canary-exec-cfg-5be02d7a91'
const noCurl = curlMissing()

let dir: string
let tmp: string
let up: Upstream
let caFile: string
const outputs: string[] = []

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-exec-cfg-'))
  tmp = path.join(dir, 'tmp')
  await mkdir(tmp)
  const ca = await createTestCa()
  caFile = path.join(dir, 'upstream-ca.pem')
  await writeFile(caFile, ca.caPem)
  up = await startUpstream(await ca.issue(['localhost']))
  up.handle((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ path: req.url, credential: req.headers.authorization === `Bearer ${CANARY}` ? 'present' : req.headers.authorization ? 'other' : 'absent' }))
  })
})

after(async () => {
  await up?.close()
  await rm(dir, { recursive: true, force: true })
  assertNoCanary(outputs, [CANARY])
})

function yaml(extra: string[] = []): string {
  return [`upstream: { caFile: ${caFile} }`, 'providers: { dev: { type: env } }', 'credentials:', `  api: { provider: dev, ref: CFG_TOKEN, hosts: ["localhost:${up.port}"], inject: { type: bearer } }`, ...extra, ''].join('\n')
}

/** `latchkey exec [args] -- curl <url>` (through latchkey: NO_PROXY overridden inside), with a private TMPDIR. */
async function execCurl(args: string[], urlPath: string, o: { env?: Record<string, string>; cwd?: string } = {}): Promise<RunResult> {
  const curl = ['env', 'NO_PROXY=unrelated.invalid', 'no_proxy=unrelated.invalid', 'curl', '-sS', '--fail', `https://localhost:${up.port}${urlPath}`]
  const r = await run(process.execPath, [BIN, 'exec', ...args, '--', ...curl], { env: baseEnv({ TMPDIR: tmp, ...o.env }), cwd: o.cwd ?? dir, timeoutMs: 30_000 })
  outputs.push(r.stdout, r.stderr)
  return r
}

test('without -c, exec reads the config file named by $LATCHKEY_CONFIG', { skip: noCurl }, async () => {
  const file = path.join(dir, 'from-env.yaml')
  await writeFile(file, yaml())
  const r = await execCurl([], '/cfg/env-var', { env: { LATCHKEY_CONFIG: file, CFG_TOKEN: CANARY } })
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout, '{"path":"/cfg/env-var","credential":"present"}')
})

test('with a required proxy client token, exec hands the command proxy URLs that carry it, and the token stays out of every output', { skip: noCurl }, async () => {
  const PROXY_TOKEN = 'canary-exec-proxy-token-7c1d20ab'
  const file = path.join(dir, 'proxy-auth.yaml')
  await writeFile(file, yaml(['proxyAuth: { token: "${env:EXEC_PROXY_TOKEN}" }']))
  const r = await execCurl(['-c', file], '/cfg/proxy-auth', { env: { CFG_TOKEN: CANARY, EXEC_PROXY_TOKEN: PROXY_TOKEN } })
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout, '{"path":"/cfg/proxy-auth","credential":"present"}')
  assertNoCanary([r.stderr], [PROXY_TOKEN])
})

test('without -c or $LATCHKEY_CONFIG, exec reads ./latchkey.yaml', { skip: noCurl }, async () => {
  const cwd = path.join(dir, 'project')
  await mkdir(cwd)
  await writeFile(path.join(cwd, 'latchkey.yaml'), yaml())
  const r = await execCurl([], '/cfg/local', { cwd, env: { CFG_TOKEN: CANARY } })
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout, '{"path":"/cfg/local","credential":"present"}')
})

test('in env-only mode (LATCHKEY_ALLOWED_HOSTS, no file) exec injects, and the variable LATCHKEY_SECRET names is not in the command\'s environment', { skip: noCurl }, async () => {
  const empty = path.join(dir, 'empty')
  await mkdir(empty)
  // Env-only mode has no upstream.caFile: latchkey trusts the test CA through Node's own variable.
  const env = { LATCHKEY_ALLOWED_HOSTS: `localhost:${up.port}`, LATCHKEY_PROVIDER: 'env', LATCHKEY_SECRET: 'ENV_ONLY_TOKEN', ENV_ONLY_TOKEN: CANARY, NODE_EXTRA_CA_CERTS: caFile }
  const r = await execCurl([], '/cfg/env-only', { cwd: empty, env })
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout, '{"path":"/cfg/env-only","credential":"present"}')
  const printed = await run(process.execPath, [BIN, 'exec', '--', process.execPath, '-e', 'process.stdout.write(JSON.stringify(process.env))'], { env: baseEnv({ TMPDIR: tmp, ...env }), cwd: empty, timeoutMs: 30_000 })
  outputs.push(printed.stdout, printed.stderr)
  assert.equal(printed.code, 0, printed.stderr)
  const childEnv = JSON.parse(printed.stdout) as Record<string, string>
  assert.equal(childEnv.ENV_ONLY_TOKEN, undefined)
  assert.equal(childEnv.LATCHKEY_SECRET, 'ENV_ONLY_TOKEN', 'the name is not a secret')
  assert.match(childEnv.HTTPS_PROXY ?? '', /^http:\/\/127\.0\.0\.1:\d+$/)
  assert.match(childEnv.SSL_CERT_FILE ?? '', /ca-bundle\.pem$/, 'env-only mode gets the throw-away CA too')
})

test('--log-level info writes one JSON line per request to stderr (path without its query, no secret); the default (warn) writes none', { skip: noCurl }, async () => {
  const file = path.join(dir, 'log.yaml')
  await writeFile(file, yaml())
  const info = await execCurl(['-c', file, '--log-level', 'info'], '/cfg/logged?secret=q', { env: { CFG_TOKEN: CANARY } })
  assert.equal(info.code, 0, info.stderr)
  // The one plain line is exec's own: localhost is bound, so it stays out of NO_PROXY.
  const all = info.stderr.trim().split('\n')
  assert.equal(all.filter((l) => l.startsWith('latchkey exec: localhost is bound to a credential')).length, 1)
  const lines = all.filter((l) => !l.startsWith('latchkey exec: ')).map((l) => JSON.parse(l) as Record<string, unknown>)
  const requests = lines.filter((l) => l.event === 'request')
  assert.equal(requests.length, 1, info.stderr)
  assert.deepEqual([requests[0]?.mode, requests[0]?.credential, requests[0]?.path, requests[0]?.status], ['intercept', 'api', '/cfg/logged', 200])
  assert.doesNotMatch(info.stderr, /secret=q/)
  const quiet = await execCurl(['-c', file], '/cfg/quiet', { env: { CFG_TOKEN: CANARY } })
  assert.equal(quiet.code, 0, quiet.stderr)
  assert.equal(quiet.stderr, 'latchkey exec: localhost is bound to a credential, so it stays out of NO_PROXY: requests to it (any port) go through latchkey\n')
})

test('a config that enables interception itself keeps its own caDir: the command trusts that CA and it stays after exec', async () => {
  const caDir = path.join(dir, 'own-ca')
  const file = path.join(dir, 'own-ca.yaml')
  await writeFile(file, yaml([`intercept: { enabled: true, caDir: ${caDir} }`]))
  const r = await run(process.execPath, [BIN, 'exec', '-c', file, '--', 'sh', '-c', 'echo "$NODE_EXTRA_CA_CERTS $SSL_CERT_FILE"'], { env: baseEnv({ TMPDIR: tmp, CFG_TOKEN: CANARY }), cwd: dir, timeoutMs: 30_000 })
  outputs.push(r.stdout, r.stderr)
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout.trim(), `${path.join(caDir, 'ca.pem')} ${path.join(caDir, 'ca-bundle.pem')}`)
  assert.ok(existsSync(path.join(caDir, 'ca-key.pem')))
  assert.deepEqual(await readdir(tmp), [], 'no throw-away CA was made')
})

test('exec exits 2 on an invalid configuration and 1 when latchkey cannot start, without running the command', async () => {
  const invalid = path.join(dir, 'invalid.yaml')
  await writeFile(invalid, 'credentials: { api: { provider: nope, ref: X, hosts: [], inject: { type: bearer } } }\n')
  const bad = await run(process.execPath, [BIN, 'exec', '-c', invalid, '--', 'sh', '-c', 'echo ran'], { env: baseEnv({ TMPDIR: tmp }), cwd: dir, timeoutMs: 30_000 })
  assert.equal(bad.code, 2, bad.stderr)
  assert.match(bad.stderr, /invalid configuration/)
  assert.equal(bad.stdout, '')
  // The CA directory cannot be created: a file is in the way.
  await writeFile(path.join(dir, 'not-a-dir'), '')
  const file = path.join(dir, 'cannot-start.yaml')
  await writeFile(file, yaml([`intercept: { enabled: true, caDir: ${path.join(dir, 'not-a-dir', 'ca')} }`]))
  const down = await run(process.execPath, [BIN, 'exec', '-c', file, '--', 'sh', '-c', 'echo ran'], { env: baseEnv({ TMPDIR: tmp, CFG_TOKEN: CANARY }), cwd: dir, timeoutMs: 30_000 })
  outputs.push(bad.stdout, bad.stderr, down.stdout, down.stderr)
  assert.equal(down.code, 1, down.stderr)
  assert.match(down.stderr, /^latchkey exec: cannot start latchkey: [\s\S]*intercept\.caDir: cannot create .* \(ENOTDIR\)/)
  assert.equal(down.stdout, '')
  assert.deepEqual(await readdir(tmp), [])
})

test("exec writes audit records only to an audit file: the command's output carries none, by default or with sink: file", { skip: noCurl }, async () => {
  const plain = path.join(dir, 'audit-default.yaml')
  await writeFile(plain, yaml())
  const quiet = await execCurl(['-c', plain], '/cfg/audit-default', { env: { CFG_TOKEN: CANARY } })
  assert.equal(quiet.code, 0, quiet.stderr)
  assert.equal(quiet.stdout, '{"path":"/cfg/audit-default","credential":"present"}', 'no audit line in the command output')
  assert.doesNotMatch(quiet.stderr, /"audit":true/)

  const auditFile = path.join(dir, 'exec-audit.log')
  const withFile = path.join(dir, 'audit-file.yaml')
  await writeFile(withFile, yaml([`audit: { sink: file, file: ${auditFile} }`]))
  const r = await execCurl(['-c', withFile], '/cfg/audit-file?token=q', { env: { CFG_TOKEN: CANARY } })
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout, '{"path":"/cfg/audit-file?token=q","credential":"present"}')
  const records = (await readFile(auditFile, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
  assert.deepEqual(records.map((x) => [x.audit, x.credential, x.path, x.status, x.outcome]), [[true, 'api', '/cfg/audit-file', 200, 'injected']])
  assert.equal((await stat(auditFile)).mode & 0o777, 0o600)
  outputs.push(await readFile(auditFile, 'utf8'))
})
