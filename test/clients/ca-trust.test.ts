/**
 * The clients pipelines use most, each with the trust setting docs/ca-trust.md gives for it,
 * through latchkey's interception to a private registry / API on a local HTTPS upstream (test
 * CA) that answers 401 without the credential: pip (a PEP 503 simple index), npm (a registry
 * packument), httpx, aiohttp, urllib3. git is in test/exec/exec-loopback-git.test.ts, requests,
 * urllib and curl in https-clients.test.ts.
 *
 * Python clients run under the first interpreter that can import them (`python3`, else the
 * system `/usr/bin/python3`, where Debian's python3-httpx / python3-aiohttp install); a test
 * whose client is missing is skipped with the reason.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { assertNoCanary } from '../helpers/log-capture.ts'
import { CANARY, startInterceptFixture, type InterceptFixture } from './fixture.ts'
import { baseEnv, run, type RunResult } from './spawn.ts'

const PYTHONS = ['python3', '/usr/bin/python3']

/** The interpreter that can import `module`, or the reason none can. */
function python(module: string): { exe: string; skip: undefined } | { exe: undefined; skip: string } {
  for (const exe of PYTHONS) {
    const r = spawnSync(exe, ['-c', `import ${module}`], { env: baseEnv(), timeout: 10_000 })
    if (!r.error && r.status === 0) return { exe, skip: undefined }
  }
  return { exe: undefined, skip: `no Python here can import ${module} (tried ${PYTHONS.join(', ')}; Debian package python3-${module})` }
}

const pip = (() => {
  const r = spawnSync('python3', ['-m', 'pip', '--version'], { env: baseEnv(), timeout: 20_000 })
  return r.error || r.status !== 0 ? 'python3 -m pip is not available' : undefined
})()
const npm = spawnSync('npm', ['--version'], { env: baseEnv(), timeout: 20_000 }).status === 0 ? undefined : 'npm is not on PATH'
const httpx = python('httpx')
const aiohttp = python('aiohttp')
const urllib3 = python('urllib3')

let f: InterceptFixture
let work: string
let wheel: Buffer | undefined
const WHEEL_NAME = 'latchkey_probe-1.0-py3-none-any.whl'
const outputs: string[] = []

before(async () => {
  f = await startInterceptFixture()
  work = await mkdtemp(path.join(tmpdir(), 'latchkey-ca-trust-'))
  if (!pip) {
    // A minimal, valid wheel, built with the standard library's zipfile.
    const py = [
      'import sys, zipfile',
      'z = zipfile.ZipFile(sys.argv[1], "w")',
      'z.writestr("latchkey_probe/__init__.py", "")',
      'z.writestr("latchkey_probe-1.0.dist-info/METADATA", "Metadata-Version: 2.1\\nName: latchkey-probe\\nVersion: 1.0\\n")',
      'z.writestr("latchkey_probe-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n")',
      'z.writestr("latchkey_probe-1.0.dist-info/RECORD", "")',
      'z.close()',
    ].join('\n')
    const file = path.join(work, WHEEL_NAME)
    const r = await run('python3', ['-c', py, file], { env: baseEnv() })
    assert.equal(r.code, 0, r.stderr)
    wheel = await readFile(file)
  }
  f.upstream.handle((req, res) => {
    const url = req.url ?? '/'
    const credential = req.headers.authorization === `Bearer ${CANARY}`
    // `/public/` needs no credential: the unbound name (a blind tunnel) reaches it too.
    if (!credential && !url.startsWith('/public/')) {
      res.writeHead(401, { 'www-authenticate': 'Bearer', 'content-type': 'text/plain' })
      res.end('credential required\n')
      return
    }
    if (url === '/simple/latchkey-probe/' && wheel) {
      const sha = createHash('sha256').update(wheel).digest('hex')
      res.writeHead(200, { 'content-type': 'text/html' })
      res.end(`<!DOCTYPE html><html><body><a href="/files/${WHEEL_NAME}#sha256=${sha}">${WHEEL_NAME}</a></body></html>\n`)
    } else if (url === `/files/${WHEEL_NAME}` && wheel) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': wheel.length })
      res.end(wheel)
    } else if (url.endsWith('/latchkey-probe')) {
      const host = req.headers.host ?? ''
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({
        name: 'latchkey-probe',
        'dist-tags': { latest: '1.0.0' },
        versions: { '1.0.0': { name: 'latchkey-probe', version: '1.0.0', dist: { tarball: `https://${host}/npm/latchkey-probe-1.0.0.tgz`, shasum: '0'.repeat(40) } } },
      }))
    } else {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ path: url, credential: credential ? 'present' : 'absent' }))
    }
  })
})

after(async () => {
  await f?.close()
  await rm(work, { recursive: true, force: true })
  assertNoCanary([...outputs, f.logs.text()], [CANARY])
})

/** The proxy variables as `latchkey exec` sets them, with NO_PROXY that does not exempt the test hosts. */
function proxyEnv(extra: Record<string, string> = {}): Record<string, string> {
  return baseEnv({ HTTPS_PROXY: f.proxyUrl, https_proxy: f.proxyUrl, HTTP_PROXY: f.proxyUrl, http_proxy: f.proxyUrl, NO_PROXY: 'unrelated.invalid', no_proxy: 'unrelated.invalid', ...extra })
}

async function keep(p: Promise<RunResult>): Promise<RunResult> {
  const r = await p
  outputs.push(r.stdout, r.stderr)
  return r
}

test('pip install from a private index: HTTPS_PROXY and REQUESTS_CA_BUNDLE on the bundle', { skip: pip }, async () => {
  const dest = path.join(work, 'pip')
  const args = ['-m', 'pip', 'download', '--no-deps', '--no-cache-dir', '--disable-pip-version-check', '--index-url', f.boundUrl('/simple/'), '-d', dest, 'latchkey-probe']
  const r = await keep(run('python3', args, { env: proxyEnv({ REQUESTS_CA_BUNDLE: f.bundleFile, PIP_CONFIG_FILE: '/dev/null' }), timeoutMs: 60_000 }))
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(await readdir(dest), [WHEEL_NAME])
  // Without the bundle pip trusts only its own roots and refuses latchkey's certificate.
  const refused = await keep(run('python3', [...args.slice(0, -2), path.join(work, 'pip-refused'), 'latchkey-probe', '--retries', '0'], { env: proxyEnv({ PIP_CONFIG_FILE: '/dev/null' }), timeoutMs: 60_000 }))
  assert.notEqual(refused.code, 0)
  assert.match(refused.stdout + refused.stderr, /CERTIFICATE_VERIFY_FAILED|SSLError|confirming the ssl certificate/i)
})

const npmEnv = (extra: Record<string, string>) =>
  proxyEnv({ npm_config_cache: path.join(work, 'npm-cache'), npm_config_userconfig: '/dev/null', npm_config_update_notifier: 'false', npm_config_fetch_retries: '0', ...extra })

test('npm against a private registry: HTTPS_PROXY and npm_config_cafile on the bundle (or NODE_EXTRA_CA_CERTS on the CA)', { skip: npm }, async () => {
  const view = ['view', 'latchkey-probe', 'version', '--registry', f.boundUrl('/npm/')]
  const cafile = await keep(run('npm', view, { env: npmEnv({ npm_config_cafile: f.bundleFile }), timeoutMs: 60_000 }))
  assert.equal(cafile.code, 0, cafile.stderr)
  assert.equal(cafile.stdout.trim(), '1.0.0')
  const extra = await keep(run('npm', view, { env: npmEnv({ NODE_EXTRA_CA_CERTS: f.caFile }), timeoutMs: 60_000 }))
  assert.equal(extra.code, 0, extra.stderr)
  assert.equal(extra.stdout.trim(), '1.0.0')
})

const getJson = (expr: string) => `import json, sys\n${expr}\nprint(json.dumps(body))`

test('httpx reads HTTPS_PROXY and SSL_CERT_FILE (trust_env is on by default)', { skip: httpx.skip }, async () => {
  const py = getJson('import httpx\nbody = httpx.get(sys.argv[1], timeout=20).json()')
  const r = await keep(run(httpx.exe as string, ['-c', py, f.boundUrl('/httpx')], { env: proxyEnv({ SSL_CERT_FILE: f.bundleFile }) }))
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(JSON.parse(r.stdout), { path: '/httpx', credential: 'present' })
  const without = await keep(run(httpx.exe as string, ['-c', py, f.boundUrl('/httpx-refused')], { env: proxyEnv() }))
  assert.notEqual(without.code, 0, 'without SSL_CERT_FILE httpx trusts its own roots only')
  assert.match(without.stderr, /CERTIFICATE_VERIFY_FAILED|certificate verify failed/)
})

test('aiohttp reads HTTPS_PROXY only with trust_env=True, and trusts the bundle through an ssl context from SSL_CERT_FILE', { skip: aiohttp.skip }, async () => {
  const py = (trustEnv: boolean) =>
    getJson(
      [
        'import asyncio, ssl, aiohttp',
        'async def main():',
        `    async with aiohttp.ClientSession(trust_env=${trustEnv ? 'True' : 'False'}) as s:`,
        '        async with s.get(sys.argv[1], ssl=ssl.create_default_context(), timeout=aiohttp.ClientTimeout(total=20)) as r:',
        '            return await r.json()',
        'body = asyncio.run(main())',
      ].join('\n'),
    )
  const env = proxyEnv({ SSL_CERT_FILE: f.bundleFile })
  const on = await keep(run(aiohttp.exe as string, ['-c', py(true), f.boundUrl('/aiohttp')], { env }))
  assert.equal(on.code, 0, on.stderr)
  assert.deepEqual(JSON.parse(on.stdout), { path: '/aiohttp', credential: 'present' })
  // Without trust_env the proxy variables are ignored: the request goes straight to the server, whose certificate the bundle does not vouch for.
  const off = await keep(run(aiohttp.exe as string, ['-c', py(false), f.boundUrl('/aiohttp-direct')], { env }))
  assert.notEqual(off.code, 0)
  assert.match(off.stderr, /certificate verify failed|SSLCertVerificationError|ClientConnectorCertificateError/)
})

test('urllib3 reads no environment: ProxyManager with ca_certs on the bundle gets the credential; PoolManager ignores HTTPS_PROXY', { skip: urllib3.skip }, async () => {
  const proxied = getJson('import urllib3\nbody = json.loads(urllib3.ProxyManager(sys.argv[2], ca_certs=sys.argv[3]).request("GET", sys.argv[1]).data)')
  const r = await keep(run(urllib3.exe as string, ['-c', proxied, f.boundUrl('/urllib3'), f.proxyUrl, f.bundleFile], { env: baseEnv() }))
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(JSON.parse(r.stdout), { path: '/urllib3', credential: 'present' })
  // HTTPS_PROXY set, PoolManager trusting only the server's own CA: it connects directly, latchkey never sees the request.
  const direct = getJson('import urllib3\nr = urllib3.PoolManager(ca_certs=sys.argv[2]).request("GET", sys.argv[1])\nbody = r.status')
  const d = await keep(run(urllib3.exe as string, ['-c', direct, f.boundUrl('/urllib3-direct'), f.upstreamCaFile], { env: proxyEnv({ SSL_CERT_FILE: f.bundleFile }) }))
  assert.equal(d.code, 0, d.stderr)
  assert.equal(d.stdout.trim(), '401', 'reached the server directly, without the credential')
})
