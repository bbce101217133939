/**
 * Real HTTPS_PROXY clients (curl, Python requests and urllib, Node fetch) talking https://
 * through latchkey's interception: the credential reaches the bound host only. Each client
 * runs as a child process with a minimal environment; NO_PROXY names an unrelated host so
 * requests to localhost / 127.0.0.1 do go through the proxy.
 *
 * The unbound name is always reached by a client that trusts only the upstream's own CA:
 * if latchkey intercepted that tunnel the client would get latchkey's leaf and fail, so a
 * success proves a blind tunnel (and the tunnel count in the logs does not move).
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { assertNoCanary } from '../helpers/log-capture.ts'
import { CANARY, startInterceptFixture, type InterceptFixture } from './fixture.ts'
import { baseEnv, curlMissing, pythonMissing, run, type RunResult } from './spawn.ts'

let f: InterceptFixture
const outputs: string[] = []

before(async () => {
  f = await startInterceptFixture()
})

after(async () => {
  await f?.close()
  assertNoCanary([...outputs, f.logs.text()], [CANARY])
})

function keep(r: RunResult): RunResult {
  outputs.push(r.stdout, r.stderr)
  return r
}

/** Proxy variables as `latchkey exec` sets them, with NO_PROXY that does not exempt our test hosts. */
function proxyEnv(extra: Record<string, string> = {}): Record<string, string> {
  return baseEnv({ HTTPS_PROXY: f.proxyUrl, https_proxy: f.proxyUrl, HTTP_PROXY: f.proxyUrl, http_proxy: f.proxyUrl, NO_PROXY: 'unrelated.invalid', no_proxy: 'unrelated.invalid', ...extra })
}

function parseLines(stdout: string): Array<{ path: string; credential: string }> {
  return stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l.replace(/^\d{3} /, '')) as { path: string; credential: string })
}

/** Intercepted tunnels opened so far (one `intercept_tunnel` line each). */
function tunnels(): number {
  return f.logs.records().filter((l) => l.event === 'intercept_tunnel').length
}

/** Run a client against the unbound name; assert it went through a blind tunnel and got no credential. */
async function assertBlindTunnel(client: () => Promise<RunResult>, path: string): Promise<void> {
  const opened = tunnels()
  const r = keep(await client())
  assert.equal(r.code, 0, `the client trusting only the upstream CA reached it, so latchkey did not intercept: ${r.stderr}`)
  assert.deepEqual(parseLines(r.stdout).map((x) => [x.path, x.credential]), [[path, 'absent']])
  assert.equal(tunnels(), opened, 'no intercepted tunnel was opened for the unbound name')
}

const noCurl = curlMissing()

test('curl -x with --cacert on the bundle gets the credential added on the bound host, over one kept-alive tunnel', { skip: noCurl }, async () => {
  const before = f.upstream.received.length
  const opened = tunnels()
  const r = keep(await run('curl', ['-sS', '--fail', '-x', f.proxyUrl, '--cacert', f.bundleFile, '-w', '\n', f.boundUrl('/curl/one'), f.boundUrl('/curl/two')], { env: baseEnv() }))
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(parseLines(r.stdout).map((x) => [x.path, x.credential]), [['/curl/one', 'present'], ['/curl/two', 'present']])
  assert.equal(f.upstream.received.length - before, 2)
  assert.equal(tunnels() - opened, 1, 'both requests went over one tunnel')
})

test('curl with HTTPS_PROXY and --cacert on the bundle gets the credential on the bound host; another host gets a blind tunnel and no credential', { skip: noCurl }, async () => {
  const r = keep(await run('curl', ['-sS', '--fail', '--cacert', f.bundleFile, f.boundUrl('/env/bound')], { env: proxyEnv() }))
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(parseLines(r.stdout).map((x) => [x.path, x.credential]), [['/env/bound', 'present']])
  await assertBlindTunnel(() => run('curl', ['-sS', '--fail', '--cacert', f.upstreamCaFile, f.unboundUrl('/env/unbound')], { env: proxyEnv() }), '/env/unbound')
})

test('curl with CURL_CA_BUNDLE set to the bundle needs no --cacert', { skip: noCurl }, async () => {
  const r = keep(await run('curl', ['-sS', '--fail', f.boundUrl('/curl/env-bundle')], { env: proxyEnv({ CURL_CA_BUNDLE: f.bundleFile }) }))
  assert.equal(r.code, 0, r.stderr)
  assert.equal(parseLines(r.stdout)[0]?.credential, 'present')
})

test('curl -x with an http:// URL (plain forward proxy) gets the credential: latchkey makes the TLS connection, the client trusts no CA', { skip: noCurl }, async () => {
  const before = f.upstream.received.length
  const opened = tunnels()
  const r = keep(await run('curl', ['-sS', '--fail', '-x', f.proxyUrl, f.plainUrl('/plain/items')], { env: baseEnv() }))
  assert.equal(r.code, 0, r.stderr)
  // The upstream speaks only HTTPS: an answer means latchkey upgraded the request to TLS.
  assert.deepEqual(parseLines(r.stdout).map((x) => [x.path, x.credential]), [['/plain/items', 'present']])
  assert.equal(f.upstream.received.length - before, 1)
  assert.equal(tunnels(), opened, 'no CONNECT tunnel: the absolute-form request went through the plain proxy')
})

test('curl that does not trust the latchkey CA fails closed and the upstream receives nothing', { skip: noCurl }, async () => {
  const before = f.upstream.received.length
  const r = keep(await run('curl', ['-sS', '-x', f.proxyUrl, '--cacert', f.upstreamCaFile, f.boundUrl('/untrusted')], { env: baseEnv() }))
  assert.equal(r.code, 60, `curl exits 60 (peer certificate cannot be authenticated): ${r.stderr}`)
  assert.equal(r.stdout, '')
  assert.equal(f.upstream.received.length, before, 'no fallback to a blind tunnel: nothing reached the upstream')
  assert.ok(f.logs.records().some((l) => l.event === 'intercept_refused' && l.reason === 'handshake_failed'))
})

test('curl CONNECT to the bound host on another port is refused with 403 intercept_port_not_allowed', { skip: noCurl }, async () => {
  const r = keep(await run('curl', ['-sS', '-x', f.proxyUrl, '--cacert', f.bundleFile, '-o', '/dev/null', 'https://localhost:1/'], { env: baseEnv() }))
  assert.equal(r.code, 56)
  assert.match(r.stderr, /CONNECT tunnel failed, response 403/)
})

const noRequests = pythonMissing('requests')
const PY_REQUESTS = `
import sys, requests
for url in sys.argv[1:]:
    r = requests.get(url, timeout=10)
    print(r.status_code, r.text)
`

test('Python requests with HTTPS_PROXY and REQUESTS_CA_BUNDLE on the bundle gets the credential on the bound host only', { skip: noRequests }, async () => {
  const r = keep(await run('python3', ['-c', PY_REQUESTS, f.boundUrl('/py/requests'), f.boundUrl('/py/requests-2')], { env: proxyEnv({ REQUESTS_CA_BUNDLE: f.bundleFile }) }))
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(parseLines(r.stdout).map((x) => [x.path, x.credential]), [['/py/requests', 'present'], ['/py/requests-2', 'present']])
  await assertBlindTunnel(() => run('python3', ['-c', PY_REQUESTS, f.unboundUrl('/py/requests-unbound')], { env: proxyEnv({ REQUESTS_CA_BUNDLE: f.upstreamCaFile }) }), '/py/requests-unbound')
})

test('Python requests with a bound host in NO_PROXY bypasses latchkey: the request goes out without the credential', { skip: noRequests }, async () => {
  const before = f.upstream.received.length
  const r = keep(await run('python3', ['-c', PY_REQUESTS, f.boundUrl('/py/no-proxy')], { env: proxyEnv({ NO_PROXY: 'localhost', no_proxy: 'localhost', REQUESTS_CA_BUNDLE: f.upstreamCaFile }) }))
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(parseLines(r.stdout).map((x) => [x.path, x.credential]), [['/py/no-proxy', 'absent']])
  assert.equal(f.upstream.received.length - before, 1)
})

test('Python requests without the CA fails with an SSL error and the upstream receives nothing', { skip: noRequests }, async () => {
  const before = f.upstream.received.length
  const r = keep(await run('python3', ['-c', PY_REQUESTS, f.boundUrl('/py/untrusted')], { env: proxyEnv({ REQUESTS_CA_BUNDLE: f.upstreamCaFile }) }))
  assert.notEqual(r.code, 0)
  assert.match(r.stderr, /SSLError|CERTIFICATE_VERIFY_FAILED/)
  assert.equal(f.upstream.received.length, before)
})

const noPython = pythonMissing('urllib.request, ssl')
const PY_URLLIB = `
import sys, urllib.request
for url in sys.argv[1:]:
    with urllib.request.urlopen(url, timeout=10) as r:
        print(r.status, r.read().decode())
`

test('Python urllib with HTTPS_PROXY and SSL_CERT_FILE on the bundle gets the credential on the bound host only', { skip: noPython }, async () => {
  const r = keep(await run('python3', ['-c', PY_URLLIB, f.boundUrl('/py/urllib')], { env: proxyEnv({ SSL_CERT_FILE: f.bundleFile }) }))
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(parseLines(r.stdout).map((x) => [x.path, x.credential]), [['/py/urllib', 'present']])
  await assertBlindTunnel(() => run('python3', ['-c', PY_URLLIB, f.unboundUrl('/py/urllib-unbound')], { env: proxyEnv({ SSL_CERT_FILE: f.upstreamCaFile }) }), '/py/urllib-unbound')
})

const NODE_FETCH = `
for (const url of process.argv.slice(1)) {
  const r = await fetch(url)
  console.log(r.status, await r.text())
}
`

test('Node fetch with NODE_USE_ENV_PROXY=1 and NODE_EXTRA_CA_CERTS on the CA certificate gets the credential on the bound host only', async () => {
  const r = keep(await run(process.execPath, ['--input-type=module', '-e', NODE_FETCH, f.boundUrl('/node/fetch')], { env: proxyEnv({ NODE_USE_ENV_PROXY: '1', NODE_EXTRA_CA_CERTS: f.caFile }) }))
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(parseLines(r.stdout).map((x) => [x.path, x.credential]), [['/node/fetch', 'present']])
  await assertBlindTunnel(() => run(process.execPath, ['--input-type=module', '-e', NODE_FETCH, f.unboundUrl('/node/fetch-unbound')], { env: proxyEnv({ NODE_USE_ENV_PROXY: '1', NODE_EXTRA_CA_CERTS: f.upstreamCaFile }) }), '/node/fetch-unbound')
})

test('Node fetch that does not trust the latchkey CA fails and the upstream receives nothing', async () => {
  const before = f.upstream.received.length
  const r = keep(await run(process.execPath, ['--input-type=module', '-e', NODE_FETCH, f.boundUrl('/node/untrusted')], { env: proxyEnv({ NODE_USE_ENV_PROXY: '1', NODE_EXTRA_CA_CERTS: f.upstreamCaFile }) }))
  assert.notEqual(r.code, 0)
  assert.match(r.stderr, /fetch failed|certificate/i)
  assert.equal(f.upstream.received.length, before)
})
