import assert from 'node:assert/strict'
import { execFile, spawnSync } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { assertNoCanary } from '../helpers/log-capture.ts'
import { exitedWithin, runBin, startBin } from '../helpers/child.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const CANARY = 'cli-canary-token-5d1e9b77'
let dir: string
let up: Upstream

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-cli-'))
  up = await startUpstream()
})
after(async () => {
  await up.close()
  await rm(dir, { recursive: true, force: true })
})

async function writeConfig(name: string, body: unknown): Promise<string> {
  const file = path.join(dir, name)
  await writeFile(file, JSON.stringify(body))
  return file
}

const goodConfig = () => ({
  listen: '127.0.0.1:0',
  admin: { listen: '127.0.0.1:0' },
  log: { level: 'trace' },
  providers: { dev: { type: 'env' } },
  credentials: { api: { provider: 'dev', ref: 'API_TOKEN', hosts: [`127.0.0.1:${up.port}`], inject: { type: 'bearer' }, insecure: true } },
  routes: { api: { upstream: up.url } },
})

/** Waits (bounded: 5 s) until the upstream has received `n` requests in all. */
async function untilReceived(n: number): Promise<void> {
  const deadline = Date.now() + 5_000
  while (up.received.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
  assert.ok(up.received.length >= n, 'the request reached the upstream')
}

test('latchkey version prints the package version and exits 0', async () => {
  const r = await runBin(['version'])
  assert.equal(r.code, 0)
  assert.match(r.stdout, /^latchkey \d+\.\d+\.\d+/)
})

test('latchkey check exits 0 for a valid config and 2 listing every problem with its path', async () => {
  const good = await writeConfig('good.json', goodConfig())
  const ok = await runBin(['check', '-c', good])
  assert.equal(ok.code, 0, ok.stderr)
  assert.match(ok.stdout, /configuration is valid/)
  const bad = await writeConfig('bad.json', {
    listen: '127.0.0.1:70000',
    bogus: 1,
    cache: { ttl: 'soon' },
    providers: { dev: { type: 'env' }, az: { type: 'azure', vaultUrl: 'not a url' }, odd: { type: 'nope' } },
    credentials: {
      a: { provider: 'none', ref: 'R', hosts: ['*'], inject: { type: 'bearer' } },
      b: { provider: 'dev', ref: 'R', hosts: ['*.example.com'], inject: { type: 'bearer' }, extra: true },
      c: { provider: 'dev', ref: 'R', hosts: ['api.example.com'], inject: { type: 'bearer' } },
    },
    routes: { r: { upstream: 'http://api.example.com' } },
  })
  const r = await runBin(['check', '-c', bad])
  assert.equal(r.code, 2, r.stderr)
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('  - '))
  const expected = [
    /^ {2}- \(root\): unknown key "bogus" \(known: listen, /,
    /^ {2}- cache\.ttl: invalid duration "soon"/,
    /^ {2}- credentials\.a\.hosts\[0\]: a bare \* would match every host/,
    /^ {2}- credentials\.a\.provider: no provider named "none"/,
    /^ {2}- credentials\.b: unknown key "extra" \(known: provider, /,
    /^ {2}- credentials\.c\.hosts: pattern "api\.example\.com" can match the same host:port as "\*\.example\.com" of credential b/,
    /^ {2}- listen: port 70000 is out of range/,
    /^ {2}- providers\.az\.vaultUrl: Invalid URL$/,
    /^ {2}- providers\.odd\.type: unknown provider type "nope"/,
    /^ {2}- routes\.r\.upstream: credential b is bound to this plain-http destination/,
    /^ {2}- routes\.r\.upstream: credential c is bound to this plain-http destination/,
  ]
  assert.equal(lines.length, expected.length, r.stderr)
  expected.forEach((re, i) => assert.match(lines[i] ?? '', re))
  assert.match(r.stderr, /^invalid configuration \(11 problems\):/)
})

test('latchkey check names ${env:...} references instead of printing the values they hold', async () => {
  const ref = '${env:LEAKED}'
  const file = await writeConfig('leak.json', {
    listen: ref,
    log: { level: ref },
    cache: { ttl: ref, maxStale: ref },
    egress: ref,
    providers: { x: { type: ref }, az: { type: 'azure', vaultUrl: ref } },
    credentials: { a: { provider: ref, ref: 'R', hosts: [`*.${ref}`, `api.${ref}`], inject: { type: 'header', header: `${ref} y` } } },
    routes: { r: { upstream: ref } },
  })
  const r = await runBin(['check', '-c', file], { env: { LEAKED: CANARY } })
  assert.equal(r.code, 2, r.stderr)
  assert.ok(r.stderr.split('\n').length > 8, 'the problems are listed')
  assert.match(r.stderr, /cache\.ttl: invalid duration \(value of \$\{env:LEAKED\}\)/)
  assertNoCanary([r.stdout, r.stderr], [CANARY])
})

test('latchkey check finds no config and says how to give one', async () => {
  const r = await runBin(['check'], { cwd: dir })
  assert.equal(r.code, 2)
  assert.match(r.stderr, /no configuration/)
})

test('latchkey doctor shows fingerprints, never values, and exits 1 when a credential cannot be fetched', async () => {
  const file = await writeConfig('doctor.json', {
    ...goodConfig(),
    credentials: { ...goodConfig().credentials, broken: { provider: 'dev', ref: 'UNSET_VAR', hosts: ['broken.example.com'], inject: { type: 'bearer' } } },
  })
  const r = await runBin(['doctor', '-c', file], { env: { API_TOKEN: CANARY } })
  assert.equal(r.code, 1)
  assert.match(r.stdout, /ok {3}api: sha256:[0-9a-f]{8}/)
  assert.match(r.stdout, /FAIL broken: secret_not_found/)
  assertNoCanary([r.stdout, r.stderr], [CANARY])
  const fine = await runBin(['doctor', '-c', await writeConfig('doctor-ok.json', goodConfig())], { env: { API_TOKEN: CANARY } })
  assert.equal(fine.code, 0, fine.stdout)
})

test('latchkey doctor --dry-run says which credential a URL would get, or why none', async () => {
  const file = await writeConfig('dry.json', goodConfig())
  const yes = await runBin(['doctor', '-c', file, '--dry-run', `http://127.0.0.1:${up.port}/x`])
  assert.equal(yes.code, 0)
  assert.match(yes.stdout, /credential api/)
  const no = await runBin(['doctor', '-c', file, '--dry-run', 'https://elsewhere.example/'])
  assert.equal(no.code, 1)
  assert.match(no.stdout, /no credential is bound/)
})

test('latchkey doctor --dry-run METHOD URL (and --method) says which allow rule lets the request through, or that none does', async () => {
  const file = await writeConfig('dry-rules.json', {
    ...goodConfig(),
    credentials: { api: { ...goodConfig().credentials.api, allow: [{ methods: ['GET', 'HEAD'], paths: ['/api/**'] }, { methods: ['POST'], paths: ['/api/*/search'] }] } },
  })
  const base = `http://127.0.0.1:${up.port}`
  const post = await runBin(['doctor', '-c', file, '--dry-run', 'POST', `${base}/api/runs/search?q=1`])
  assert.equal(post.code, 0, post.stdout)
  assert.match(post.stdout, /→ credential api /)
  assert.match(post.stdout, /^ {2}POST \/api\/runs\/search → allowed by credentials\.api\.allow\[1\]$/m)
  const viaFlag = await runBin(['doctor', '-c', file, '--method', 'delete', '--dry-run', `${base}/api/x/./y`])
  assert.equal(viaFlag.code, 1, viaFlag.stdout)
  assert.match(viaFlag.stdout, /^ {2}DELETE \/api\/x\/y → refused: 403 policy_denied \(no rule of credentials\.api\.allow matches\)$/m)
  const get = await runBin(['doctor', '-c', file, '--dry-run', `${base}/api/a%7Eb`])
  assert.equal(get.code, 0, get.stdout)
  assert.match(get.stdout, /^ {2}GET \/api\/a~b → allowed by credentials\.api\.allow\[0\] \(sent as \/api\/a~b\)$/m)
  const climbing = await runBin(['doctor', '-c', file, '--dry-run', 'GET', `${base}/api/%2e%2e/%2e%2e/etc`])
  assert.equal(climbing.code, 1, climbing.stdout)
  assert.match(climbing.stdout, /GET → refused: 400 bad_request/)
  const tooMany = await runBin(['doctor', '-c', file, '--dry-run', 'GET', 'PUT', `${base}/`])
  assert.equal(tooMany.code, 2)
  assert.match(tooMany.stderr, /--dry-run takes \[METHOD\] URL, got 3 arguments/)
})

test('latchkey doctor --dry-run gives the proxy\'s own answer: userinfo, CONNECT without interception, plain http for insecure, routes', async () => {
  const config = {
    ...goodConfig(),
    listen: '127.0.0.1:18181',
    credentials: { ...goodConfig().credentials, tls: { provider: 'dev', ref: 'TLS_TOKEN', hosts: ['api.example.com'], inject: { type: 'bearer' } } },
  }
  const file = await writeConfig('dry-proxy.json', config)
  const dry = (url: string, f = file) => runBin(['doctor', '-c', f, '--dry-run', url])

  const userinfo = await dry('http://user:pw@api.example.com/')
  assert.equal(userinfo.code, 1)
  assert.match(userinfo.stdout, /400 userinfo_not_allowed/)
  assert.doesNotMatch(userinfo.stdout, /→ credential/)

  const https = await dry('https://api.example.com/v1?q=1')
  assert.equal(https.code, 1)
  assert.match(https.stdout, /CONNECT \(HTTPS_PROXY\) would be refused: 403 intercept_disabled/)
  assert.match(https.stdout, /http:\/\/api\.example\.com\/v1\?q=1 through the forward proxy \(HTTP_PROXY\) would get credential tls; latchkey connects with TLS to api\.example\.com:443/)

  const intercepted = await dry('https://api.example.com/', await writeConfig('dry-intercept.json', { ...config, intercept: { enabled: true, caDir: path.join(dir, 'ca') } }))
  assert.equal(intercepted.code, 0, intercepted.stdout)
  assert.match(intercepted.stdout, /→ credential tls .*\n {2}through CONNECT \(HTTPS_PROXY\) with TLS interception/)

  // An insecure credential on an explicit port: the resolver keeps plain http (it never upgrades an insecure one).
  const insecure = await dry(`http://127.0.0.1:${up.port}/x`)
  assert.equal(insecure.code, 0)
  assert.match(insecure.stdout, new RegExp(`→ credential api .*\\n {2}through the forward proxy \\(HTTP_PROXY\\) latchkey connects to http://127\\.0\\.0\\.1:${up.port}`))
  assert.doesNotMatch(insecure.stdout, /with TLS/)

  const forward = await dry('http://API.example.com./p')
  assert.equal(forward.code, 0)
  assert.match(forward.stdout, /credential tls .*\n {2}through the forward proxy \(HTTP_PROXY\) latchkey connects with TLS to api\.example\.com:443/)

  const route = await dry('http://127.0.0.1:18181/api/x')
  assert.equal(route.code, 0)
  assert.match(route.stdout, /credential api .*\n {2}as a route on latchkey's listener latchkey connects to http:\/\/127\.0\.0\.1/)
  const noRoute = await dry('http://127.0.0.1:18181/nope/x')
  assert.equal(noRoute.code, 1)
  assert.match(noRoute.stdout, /404 route_not_found/)
})

test('latchkey run serves requests, logs redacted lines, and drains an in-flight request on SIGTERM before exiting 0', async () => {
  const file = await writeConfig('run.json', goodConfig())
  const d = await startBin(['run', '-c', file], { env: { API_TOKEN: CANARY } })
  up.handle((_req, res) => setTimeout(() => res.end('slow ok'), 400))
  const before = up.received.length
  const inflight = fetch(`${d.proxyUrl}/api/slow`).then(async (r) => ({ status: r.status, text: await r.text() }))
  await untilReceived(before + 1) // the request is in flight at the upstream: now the signal
  d.child.kill('SIGTERM')
  const res = await inflight
  assert.equal(res.status, 200)
  assert.equal(res.text, 'slow ok')
  const ran = await exitedWithin(d)
  assert.equal(ran.code, 0)
  assert.equal(up.received.at(-1)?.headers.authorization, `Bearer ${CANARY}`)
  assertNoCanary(d.output(), [CANARY])
  up.handle((_req, res) => res.end('ok'))
})

test('latchkey run drains an in-flight request on SIGINT (Ctrl-C) and exits 0', async () => {
  const file = await writeConfig('run-int.json', goodConfig())
  const d = await startBin(['run', '-c', file], { env: { API_TOKEN: CANARY } })
  up.handle((_req, res) => setTimeout(() => res.end('slow int'), 400))
  const before = up.received.length
  const inflight = fetch(`${d.proxyUrl}/api/slow-int`).then(async (r) => ({ status: r.status, text: await r.text() }))
  await untilReceived(before + 1) // the request is in flight at the upstream: now the signal
  d.child.kill('SIGINT')
  const res = await inflight
  assert.equal(res.status, 200)
  assert.equal(res.text, 'slow int')
  const ran = await exitedWithin(d)
  assert.equal(ran.code, 0)
  assert.equal(ran.signal, null, 'exited by itself, not killed by the signal')
  assert.match(ran.stderr, /SIGINT received, draining/)
  // Drained: the listener is closed after exit.
  await assert.rejects(fetch(`${d.proxyUrl}/api/after`))
  assertNoCanary(d.output(), [CANARY])
  up.handle((_req, res) => res.end('ok'))
})

test('env-only mode runs one credential from LATCHKEY_* variables', async () => {
  const d = await startBin(['run'], {
    cwd: dir,
    env: { LATCHKEY_ALLOWED_HOSTS: `127.0.0.1:${up.port}`, LATCHKEY_SECRET: 'MY_TOKEN', MY_TOKEN: CANARY, LATCHKEY_AUTH: 'header:X-Api-Key', LATCHKEY_LISTEN: '127.0.0.1:0', LATCHKEY_ADMIN_LISTEN: '127.0.0.1:0', LATCHKEY_INSECURE: 'true', LATCHKEY_LOG_LEVEL: 'debug' },
  })
  try {
    const { ProxyAgent, request } = await import('undici')
    const agent = new ProxyAgent(d.proxyUrl)
    const r = await request(`${up.url}/env-mode`, { dispatcher: agent })
    await r.body.dump()
    await agent.close()
    assert.equal(r.statusCode, 200)
    assert.equal(up.received.at(-1)?.headers['x-api-key'], CANARY)
  } finally {
    d.child.kill('SIGTERM')
  }
  const ran = await exitedWithin(d)
  assert.equal(ran.code, 0)
  assertNoCanary(ran.stdout + ran.stderr, [CANARY])
})

test('env-only mode with an empty allowlist refuses to start', async () => {
  const r = await runBin(['run'], { cwd: dir, env: { LATCHKEY_ALLOWED_HOSTS: '', LATCHKEY_SECRET: 'X' } })
  assert.equal(r.code, 2)
  assert.match(r.stderr, /LATCHKEY_ALLOWED_HOSTS/)
})

const curl = spawnSync('curl', ['--version']).status === 0
test('curl -x through the forward proxy delivers the credential upstream', { skip: curl ? false : 'curl is not installed on this machine' }, async () => {
  const file = await writeConfig('curl.json', goodConfig())
  const d = await startBin(['run', '-c', file], { env: { API_TOKEN: CANARY } })
  try {
    // Asynchronous: the upstream lives in this process and must keep serving while curl runs.
    const run = promisify(execFile)
    const out = (await run('curl', ['-sS', '--max-time', '10', '-x', d.proxyUrl, `${up.url}/via-curl`], { env: { PATH: process.env.PATH ?? '', NO_PROXY: '' } })).stdout
    assert.equal(out, 'ok')
    assert.equal(up.received.at(-1)?.url, '/via-curl')
    assert.equal(up.received.at(-1)?.headers.authorization, `Bearer ${CANARY}`)
    const denied = (await run('curl', ['-sS', '--max-time', '10', '-x', d.proxyUrl, '-o', '-', '-w', '%{http_code}', 'http://127.0.0.9:9/'], { env: { PATH: process.env.PATH ?? '' } })).stdout
    assert.match(denied, /egress_denied/)
    assert.match(denied, /403$/)
  } finally {
    d.child.kill('SIGTERM')
    await exitedWithin(d)
  }
})

test('latchkey run --admin-listen overrides the config (how a pod binds the probes) and a malformed value exits 2', async () => {
  const file = await writeConfig('override.json', { ...goodConfig(), admin: { listen: '127.0.0.1:1' } })
  const d = await startBin(['run', '-c', file, '--admin-listen', '127.0.0.1:0'], { env: { API_TOKEN: CANARY } })
  try {
    assert.notEqual(d.adminUrl, 'http://127.0.0.1:1')
    const r = await fetch(`${d.adminUrl}/healthz`)
    assert.equal(r.status, 200)
    await r.text()
  } finally {
    d.child.kill('SIGTERM')
    await exitedWithin(d)
  }
  const bad = await runBin(['run', '-c', file, '--admin-listen', 'nonsense'])
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /--admin-listen/)
})
