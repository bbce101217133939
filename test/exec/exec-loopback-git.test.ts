/**
 * `latchkey exec` with credentials bound to loopback hosts, through the real bin: those hosts
 * stay out of the NO_PROXY exec sets (so `curl http://127.0.0.1:PORT` and `git clone
 * https://localhost:PORT/...` reach latchkey with no override), and git trusts latchkey's CA
 * through GIT_SSL_CAINFO. The git server is `git http-backend` behind a real HTTPS upstream with
 * a test CA that answers 401 without the credential.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, test } from 'node:test'
import { execNoProxy } from '../../src/cli/exec-command.ts'
import { parseConfigText } from '../../src/config/load.ts'
import { assertNoCanary } from '../helpers/log-capture.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { baseEnv, curlMissing, run, type RunResult } from '../clients/spawn.ts'
import { gitEnv, gitMissing, makeBareRepo, serveGit } from './git-server.ts'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const BIN = path.join(REPO, 'bin', 'latchkey.js')
const GIT_TOKEN = 'canary-git-token-6c1d93ae07'
const LOCAL_TOKEN = 'canary-loopback-token-b85f2e4a10'
const noGit = gitMissing()
const noCurl = curlMissing()

let dir: string
let gitUp: Upstream
let plainUp: Upstream
let config: string
let upstreamCa: string
const outputs: string[] = []

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-exec-loopback-'))
  const ca = await createTestCa()
  upstreamCa = path.join(dir, 'upstream-ca.pem')
  await writeFile(upstreamCa, ca.caPem)
  gitUp = await startUpstream(await ca.issue(['localhost']))
  plainUp = await startUpstream()
  plainUp.handle((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ path: req.url, credential: req.headers.authorization === `Bearer ${LOCAL_TOKEN}` ? 'present' : 'absent' }))
  })
  if (!noGit) {
    const srv = path.join(dir, 'srv')
    await makeBareRepo(srv, 'app', 'hello from the private repo\n')
    serveGit(gitUp, srv, `Bearer ${GIT_TOKEN}`)
  }
  config = path.join(dir, 'latchkey.yaml')
  await writeFile(
    config,
    [
      'upstream: { caFile: upstream-ca.pem }',
      'providers:',
      '  dev: { type: env, prefix: APP_ }',
      'credentials:',
      `  git: { provider: dev, ref: GIT, hosts: ["localhost:${gitUp.port}"], inject: { type: bearer } }`,
      `  local: { provider: dev, ref: LOCAL, hosts: ["127.0.0.1:${plainUp.port}"], insecure: true, inject: { type: bearer } }`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  )
})

after(async () => {
  await Promise.all([gitUp?.close(), plainUp?.close()])
  await rm(dir, { recursive: true, force: true })
  assertNoCanary(outputs, [GIT_TOKEN, LOCAL_TOKEN])
})

async function exec(args: string[], extra: Record<string, string> = {}): Promise<RunResult> {
  const r = await run(process.execPath, [BIN, 'exec', '-c', config, '--', ...args], { env: gitEnv({ APP_GIT: GIT_TOKEN, APP_LOCAL: LOCAL_TOKEN, ...extra }), cwd: dir, timeoutMs: 60_000 })
  outputs.push(r.stdout, r.stderr)
  return r
}

test('bound loopback hosts stay out of the NO_PROXY exec sets, and the startup line names them', async () => {
  const r = await exec(['sh', '-c', 'printf "%s|%s" "$NO_PROXY" "$no_proxy"'])
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout, '::1|::1', 'localhost and 127.0.0.1 are bound; ::1 is not and still goes direct')
  assert.match(r.stderr, /latchkey exec: localhost, 127\.0\.0\.1 are bound to a credential, so they stay out of NO_PROXY/)
})

test('latchkey exec -- curl http://127.0.0.1:PORT with a credential bound to it gets the credential with no NO_PROXY override', { skip: noCurl }, async () => {
  const r = await exec(['curl', '-sS', '--fail', `http://127.0.0.1:${plainUp.port}/loopback`])
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(JSON.parse(r.stdout), { path: '/loopback', credential: 'present' })
})

test('git clone over HTTPS from the smart-HTTP server fails with 401 when nothing adds the credential', { skip: noGit }, async () => {
  const r = await run('git', ['clone', '-q', `https://localhost:${gitUp.port}/app.git`, path.join(dir, 'denied')], { env: gitEnv({ GIT_SSL_CAINFO: upstreamCa }), cwd: dir, timeoutMs: 30_000 })
  outputs.push(r.stdout, r.stderr)
  assert.notEqual(r.code, 0)
  assert.match(r.stderr, /401|Authentication failed|could not read Username/)
})

test('latchkey exec -- git clone https://... clones through latchkey: the credential is added, git trusts latchkey\'s CA via GIT_SSL_CAINFO', { skip: noGit }, async () => {
  const out = path.join(dir, 'cloned')
  const seen = gitUp.received.length
  const r = await exec(['git', 'clone', '-q', `https://localhost:${gitUp.port}/app.git`, out])
  assert.equal(r.code, 0, r.stderr)
  assert.equal(await readFile(path.join(out, 'README'), 'utf8'), 'hello from the private repo\n')
  const requests = gitUp.received.slice(seen)
  assert.ok(requests.some((q) => q.method === 'POST' && q.url.endsWith('/git-upload-pack')), 'the smart protocol was spoken')
  assert.ok(requests.every((q) => q.headers.authorization === `Bearer ${GIT_TOKEN}`), 'every request carried the credential')
})

test('an inherited GIT_SSL_CAINFO naming the system store is replaced by the bundle; git clone still works', { skip: noGit }, async () => {
  // The bundle holds the system store, so a file that is a copy of it is "the system store".
  const systemCopy = path.join(dir, 'system-store.pem')
  const probe = await run(process.execPath, ['-e', "process.stdout.write(require('node:tls').getCACertificates('bundled').join('\\n'))"], { env: baseEnv() })
  await writeFile(systemCopy, probe.stdout)
  const r = await exec(['sh', '-c', 'printf "%s" "$GIT_SSL_CAINFO"; git clone -q "$1" "$2"', 'sh', `https://localhost:${gitUp.port}/app.git`, path.join(dir, 'cloned-system')], { GIT_SSL_CAINFO: systemCopy })
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /ca-bundle\.pem$/)
  assert.doesNotMatch(r.stderr, /GIT_SSL_CAINFO/, 'replacing the system store needs no note')
})

test('an inherited GIT_SSL_CAINFO naming another CA file gets a copy of that file plus latchkey\'s CA, and exec says so', { skip: noGit }, async () => {
  const r = await exec(['sh', '-c', 'cat "$GIT_SSL_CAINFO"; git clone -q "$1" "$2"', 'sh', `https://localhost:${gitUp.port}/app.git`, path.join(dir, 'cloned-corp')], { GIT_SSL_CAINFO: upstreamCa })
  assert.equal(r.code, 0, r.stderr)
  const corp = await readFile(upstreamCa, 'utf8')
  assert.ok(r.stdout.startsWith(corp.trimEnd()), 'the inherited file comes first, unchanged')
  assert.equal(r.stdout.match(/BEGIN CERTIFICATE/g)?.length, 2, 'that CA and latchkey\'s, not the public roots')
  assert.match(r.stderr, new RegExp(`GIT_SSL_CAINFO was ${upstreamCa.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}; the command gets a copy of it with latchkey's CA appended`))
})

test('execNoProxy leaves out exactly the loopback names a credential is bound to, IPv6 and any port included', () => {
  const noProxyFor = (hosts: string[]) => {
    const text = ['providers: { dev: { type: env } }', 'credentials:', `  c: { provider: dev, ref: T, hosts: ${JSON.stringify(hosts)}, insecure: true, inject: { type: bearer } }`, ''].join('\n')
    const r = parseConfigText(text, { env: {}, baseDir: dir })
    assert.ok(r.ok, JSON.stringify(!r.ok && r.issues))
    return execNoProxy(r.config)
  }
  assert.deepEqual(noProxyFor(['api.example.com']), { noProxy: 'localhost,127.0.0.1,::1', bound: [] })
  assert.deepEqual(noProxyFor(['[::1]:8080']), { noProxy: 'localhost,127.0.0.1', bound: ['::1'] })
  assert.deepEqual(noProxyFor(['LOCALHOST:*', '127.0.0.1']), { noProxy: '::1', bound: ['localhost', '127.0.0.1'] })
  assert.deepEqual(noProxyFor(['127.0.0.2:9000']), { noProxy: 'localhost,127.0.0.1,::1', bound: [] }, 'not in NO_PROXY to begin with')
})
