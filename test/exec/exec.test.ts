/**
 * `latchkey exec` and `latchkey ca` through the real bin, with real commands as children.
 * Inside `exec`, NO_PROXY is loopback (as documented); the tests' upstream is on loopback, so
 * the commands here override it (`curl --noproxy ''`, `env NO_PROXY=...`) to go through latchkey.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, test } from 'node:test'
import { assertNoCanary } from '../helpers/log-capture.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { baseEnv, curlMissing, pythonMissing, run, type RunResult } from '../clients/spawn.ts'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const BIN = path.join(REPO, 'bin', 'latchkey.js')
const CANARY = 'canary-exec-3a8e61f0c9'
const CANARY_ADMIN = 'canary-admin-token-77b2e9d4c1'
const CANARY_VAULT = 'canary-vault-token-e4c09a1b'
const CANARY_AWS = 'canary-aws-secret-5d3f8b27'
const CANARY_AZURE = 'canary-azure-secret-9e14c6d2'

let dir: string
let up: Upstream
let config: string
const outputs: string[] = []

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-exec-test-'))
  const ca = await createTestCa()
  await writeFile(path.join(dir, 'upstream-ca.pem'), ca.caPem)
  up = await startUpstream(await ca.issue(['localhost', '127.0.0.1']))
  up.handle((req, res) => {
    const auth = req.headers.authorization
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ path: req.url, credential: auth === `Bearer ${CANARY}` ? 'present' : auth ? 'other' : 'absent' }))
  })
  config = path.join(dir, 'latchkey.yaml')
  await writeFile(
    config,
    [
      'admin: { token: "${env:LK_ADMIN_TOKEN}" }',
      'upstream: { caFile: upstream-ca.pem }',
      'egress: passthrough',
      'providers:',
      '  dev: { type: env, prefix: APP_ }',
      '  vault: { type: vault, address: "https://127.0.0.1:1" }',
      '  aws: { type: aws, region: eu-west-1 }',
      '  azure: { type: azure, vaultUrl: "https://127.0.0.1:1" }',
      'credentials:',
      `  api: { provider: dev, ref: TOKEN, hosts: ["localhost:${up.port}"], inject: { type: bearer } }`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  )
})

after(async () => {
  await up?.close()
  await rm(dir, { recursive: true, force: true })
  assertNoCanary(outputs, [CANARY, CANARY_ADMIN, CANARY_VAULT, CANARY_AWS, CANARY_AZURE])
})

/** latchkey's environment: the secrets it reads, and variables the command may keep. */
function latchkeyEnv(extra: Record<string, string> = {}): Record<string, string> {
  return baseEnv({ APP_TOKEN: CANARY, LK_ADMIN_TOKEN: CANARY_ADMIN, VAULT_TOKEN: CANARY_VAULT, VAULT_ADDR: 'https://127.0.0.1:1', AWS_SECRET_ACCESS_KEY: CANARY_AWS, AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE', AWS_REGION: 'eu-west-1', AZURE_CLIENT_SECRET: CANARY_AZURE, GOOGLE_APPLICATION_CREDENTIALS: '/var/run/gcp/key.json', KEEP_ME: 'yes', ...extra })
}

async function exec(args: string[], extra: Record<string, string> = {}): Promise<RunResult> {
  const r = await run(process.execPath, [BIN, 'exec', '-c', config, ...args], { env: latchkeyEnv(extra), cwd: dir, timeoutMs: 30_000 })
  outputs.push(r.stdout, r.stderr)
  return r
}

test('exec exits with the command\'s exit code, 128+n when the command dies of a signal, 127 / 126 when it cannot be found / run', async () => {
  assert.equal((await exec(['--', 'sh', '-c', 'exit 7'])).code, 7)
  assert.equal((await exec(['--', 'sh', '-c', 'exit 0'])).code, 0)
  assert.equal((await exec(['--', 'sh', '-c', 'kill -TERM $$'])).code, 143)
  const missing = await exec(['--', 'no-such-command-latchkey-test'])
  assert.equal(missing.code, 127)
  assert.match(missing.stderr, /cannot run no-such-command-latchkey-test \(ENOENT\)/)
  const notExecutable = path.join(dir, 'not-executable.sh')
  await writeFile(notExecutable, '#!/bin/sh\necho ran\n', { mode: 0o644 })
  const denied = await exec(['--', notExecutable])
  assert.equal(denied.code, 126)
  assert.match(denied.stderr, /cannot run .*not-executable\.sh \(EACCES\)/)
})

test('the command\'s environment holds the proxy and CA variables and none of the secrets latchkey reads', async () => {
  const r = await exec(['--', process.execPath, '-e', 'process.stdout.write(JSON.stringify(process.env))'])
  assert.equal(r.code, 0, r.stderr)
  const env = JSON.parse(r.stdout) as Record<string, string>
  for (const name of ['APP_TOKEN', 'LK_ADMIN_TOKEN', 'VAULT_TOKEN', 'AWS_SECRET_ACCESS_KEY', 'AWS_ACCESS_KEY_ID', 'AZURE_CLIENT_SECRET']) assert.equal(env[name], undefined, name)
  assert.equal(env.KEEP_ME, 'yes')
  assert.equal(env.GOOGLE_APPLICATION_CREDENTIALS, '/var/run/gcp/key.json', 'a path, not a secret')
  assert.equal(env.VAULT_ADDR, 'https://127.0.0.1:1', 'addresses are not secrets')
  assert.equal(env.AWS_REGION, 'eu-west-1')
  assert.match(env.HTTPS_PROXY ?? '', /^http:\/\/127\.0\.0\.1:\d+$/)
  for (const name of ['HTTP_PROXY', 'http_proxy', 'https_proxy', 'LATCHKEY_PROXY_URL']) assert.equal(env[name], env.HTTPS_PROXY, name)
  assert.equal(env.NO_PROXY, '127.0.0.1,::1', 'localhost is bound to the credential, so it goes through latchkey')
  assert.equal(env.no_proxy, env.NO_PROXY)
  assert.equal(env.NODE_USE_ENV_PROXY, '1')
  assert.equal(env.SSL_CERT_FILE, env.REQUESTS_CA_BUNDLE)
  assert.equal(env.CURL_CA_BUNDLE, env.REQUESTS_CA_BUNDLE)
  assert.equal(env.GIT_SSL_CAINFO, env.REQUESTS_CA_BUNDLE, 'git reads only GIT_SSL_CAINFO')
  assert.match(env.SSL_CERT_FILE ?? '', /ca-bundle\.pem$/)
  assert.match(env.NODE_EXTRA_CA_CERTS ?? '', /ca\.pem$/)
  assert.ok(!existsSync(env.NODE_EXTRA_CA_CERTS as string), 'the throw-away CA is removed when exec ends')
  assertNoCanary(r.stdout, [CANARY, CANARY_ADMIN, CANARY_VAULT, CANARY_AWS, CANARY_AZURE])
})

test('exec forwards SIGTERM to the command and exits with the command\'s code', async () => {
  const script = "process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(42) }); setInterval(() => {}, 1000); console.log('ready')"
  const child = spawn(process.execPath, [BIN, 'exec', '-c', config, '--', process.execPath, '-e', script], { env: latchkeyEnv(), cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
  const closed = new Promise<number | null>((r) => child.once('close', (code) => r(code)))
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000)
  try {
    for (let i = 0; i < 400 && !stdout.includes('ready'); i++) await new Promise((r) => setTimeout(r, 25))
    assert.match(stdout, /ready/, stderr)
    child.kill('SIGTERM')
    assert.equal(await closed, 42, stderr)
    assert.match(stdout, /got SIGTERM/)
  } finally {
    clearTimeout(killer)
    outputs.push(stdout, stderr)
  }
})

test('nothing is left running after exec: the proxy port is closed once the command has exited', async () => {
  const r = await exec(['--', 'sh', '-c', 'echo "$LATCHKEY_PROXY_URL"'])
  assert.equal(r.code, 0, r.stderr)
  const u = new URL(r.stdout.trim())
  const refused = await new Promise<boolean>((resolve) => {
    const s = net.connect(Number(u.port), u.hostname)
    s.once('connect', () => {
      s.destroy()
      resolve(false)
    })
    s.once('error', () => resolve(true))
  })
  assert.ok(refused, 'the in-process proxy stopped with the command')
})

const noCurl = curlMissing()

test('latchkey exec -- curl https://... gets the credential through the throw-away interception CA', { skip: noCurl }, async () => {
  const r = await exec(['--', 'curl', '-sS', '--fail', '--noproxy', '', `https://localhost:${up.port}/exec/curl`])
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout.trim(), '{"path":"/exec/curl","credential":"present"}')
})

const noRequests = pythonMissing('requests')

test('latchkey exec -- python3 with requests gets the credential with no code change', { skip: noRequests }, async () => {
  const py = 'import requests; print(requests.get(__import__("sys").argv[1], timeout=10).text)'
  const r = await exec(['--', 'env', 'NO_PROXY=unrelated.invalid', 'no_proxy=unrelated.invalid', 'python3', '-c', py, `https://localhost:${up.port}/exec/python`])
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout.trim(), '{"path":"/exec/python","credential":"present"}')
})

test('latchkey exec -- node with fetch gets the credential (NODE_USE_ENV_PROXY and NODE_EXTRA_CA_CERTS set by exec)', async () => {
  const js = 'const r = await fetch(process.argv[1]); console.log(await r.text())'
  const r = await exec(['--', 'env', 'NO_PROXY=unrelated.invalid', 'no_proxy=unrelated.invalid', process.execPath, '--input-type=module', '-e', js, `https://localhost:${up.port}/exec/node`])
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout.trim(), '{"path":"/exec/node","credential":"present"}')
})

test('exec --no-intercept leaves interception off: CONNECT to the bound host is refused', { skip: noCurl }, async () => {
  const r = await exec(['--no-intercept', '--', 'curl', '-sS', '--noproxy', '', '-o', '/dev/null', `https://localhost:${up.port}/`])
  assert.equal(r.code, 56, r.stderr)
  assert.match(r.stderr, /CONNECT tunnel failed, response 403/)
})

test('latchkey ca prints the certificate and the export lines; --env and --pem print one of them', async () => {
  const caDir = path.join(dir, 'ca-cmd')
  const caConfig = path.join(dir, 'ca.yaml')
  await writeFile(caConfig, `intercept: { enabled: true, caDir: ${caDir}, publicCaFile: ${path.join(dir, 'public', 'latchkey-ca.pem')} }\n`)
  const all = await run(process.execPath, [BIN, 'ca', '-c', caConfig], { env: baseEnv(), cwd: dir })
  assert.equal(all.code, 0, all.stderr)
  const pem = await run(process.execPath, [BIN, 'ca', '-c', caConfig, '--pem'], { env: baseEnv(), cwd: dir })
  assert.ok(new X509Certificate(pem.stdout).ca)
  assert.equal(pem.stdout, await readFile(path.join(caDir, 'ca.pem'), 'utf8'), 'the same CA on every call')
  assert.ok(all.stdout.includes(pem.stdout))
  const env = await run(process.execPath, [BIN, 'ca', '-c', caConfig, '--env'], { env: baseEnv(), cwd: dir })
  const bundle = path.join(dir, 'public', 'latchkey-ca-bundle.pem')
  const exportLines = [
    `export SSL_CERT_FILE=${bundle}`,
    `export REQUESTS_CA_BUNDLE=${bundle}`,
    `export CURL_CA_BUNDLE=${bundle}`,
    `export GIT_SSL_CAINFO=${bundle}`,
    `export NODE_EXTRA_CA_CERTS=${path.join(dir, 'public', 'latchkey-ca.pem')}`,
  ]
  // The default output and --env carry the same five lines, in this order; --pem carries none.
  for (const out of [all.stdout, env.stdout]) assert.deepEqual(out.split('\n').filter((l) => l.startsWith('export ')), exportLines)
  assert.doesNotMatch(pem.stdout, /export /)
  // The --env output is valid shell.
  const sh = await run('sh', ['-c', `${env.stdout}\necho "$REQUESTS_CA_BUNDLE"`], { env: baseEnv() })
  assert.equal(sh.stdout.trim(), bundle)
})

test('latchkey ca --env with an inherited GIT_SSL_CAINFO naming another CA file sets the bundle and warns on stderr naming that file', async () => {
  const caConfig = path.join(dir, 'ca-git.yaml')
  await writeFile(caConfig, `intercept: { enabled: true, caDir: ${path.join(dir, 'ca-git')} }\n`)
  const corp = path.join(dir, 'upstream-ca.pem')
  const r = await run(process.execPath, [BIN, 'ca', '-c', caConfig, '--env'], { env: baseEnv({ GIT_SSL_CAINFO: corp }), cwd: dir })
  assert.equal(r.code, 0, r.stderr)
  assert.ok(r.stdout.includes(`export GIT_SSL_CAINFO=${path.join(dir, 'ca-git', 'ca-bundle.pem')}\n`))
  assert.ok(r.stderr.includes(`warning: GIT_SSL_CAINFO is ${corp}, which holds certificates the bundle lacks`), r.stderr)
  assert.doesNotMatch(r.stdout, /warning/, 'stdout stays valid shell')
})
