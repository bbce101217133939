import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { configFromEnv } from '../../src/config/env-mode.ts'
import { isLoopbackHost } from '../../src/config/listeners.ts'
import { validateConfig } from '../../src/config/load.ts'
import { runBin } from '../helpers/child.ts'

let dir: string
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-listeners-'))
})
after(async () => {
  await rm(dir, { recursive: true, force: true })
})

const minimal = {
  providers: { dev: { type: 'env' } },
  credentials: { api: { provider: 'dev', ref: 'API_TOKEN', hosts: ['api.example.com'], inject: { type: 'bearer' } } },
}
const validate = (extra: Record<string, unknown>) => validateConfig({ ...minimal, ...extra }, { env: {}, baseDir: dir })
const REASON = 'the CI runners on 10.0.0.0/24 share this proxy'

test('loopback means 127.0.0.0/8, ::1 (also IPv4-mapped) and localhost; wildcards, other addresses and names are not', () => {
  for (const h of ['127.0.0.1', '127.8.9.10', 'localhost', 'LOCALHOST', '::1', '[::1]', '::ffff:127.0.0.1', '0:0:0:0:0:0:0:1']) assert.equal(isLoopbackHost(h), true, h)
  for (const h of ['0.0.0.0', '::', '[::]', '10.0.0.5', '192.168.1.2', '::ffff:10.0.0.1', 'proxy.internal', 'localhost.example.com', '128.0.0.1']) assert.equal(isLoopbackHost(h), false, h)
})

test('a proxy listener off loopback without exposed is refused at listen, and the message names the exposed.reason key', () => {
  for (const listen of ['0.0.0.0:8181', '[::]:8181', '10.0.0.5:8181', 'proxy.internal:8181']) {
    const r = validate({ listen })
    assert.equal(r.ok, false, listen)
    const issue = r.ok ? undefined : r.issues.find((i) => i.path === 'listen')
    assert.ok(issue, `${listen}: an issue at listen`)
    assert.match(issue.message, /is not a loopback address/)
    assert.match(issue.message, /exposed: \{ reason: /)
  }
})

test('exposed with a reason makes a non-loopback proxy listener a loud, accepted choice (a warning says so)', () => {
  const r = validate({ listen: '0.0.0.0:8181', exposed: { reason: REASON } })
  assert.equal(r.ok, true, r.ok ? '' : JSON.stringify(r.issues))
  assert.deepEqual(r.ok && r.config.exposed, { reason: REASON })
  assert.ok(r.ok && r.config.warnings.some((w) => /proxy listener 0\.0\.0\.0:8181 is reachable from the network/.test(w)))
})

test('exposed needs a reason of substance, and nothing else', () => {
  for (const exposed of [{}, { reason: '' }, { reason: '   yes    ' }, { reason: REASON, token: 'x' }, true]) {
    const r = validate({ listen: '0.0.0.0:8181', exposed })
    assert.equal(r.ok, false, JSON.stringify(exposed))
    assert.ok(!r.ok && r.issues.some((i) => i.path.startsWith('exposed')), JSON.stringify(r.ok ? [] : r.issues))
  }
})

test('a loopback proxy listener needs no exposed key and gets no listener warning', () => {
  const r = validate({ listen: '127.0.0.1:8181', admin: { listen: '[::1]:8182' } })
  assert.equal(r.ok, true)
  assert.deepEqual(r.ok && r.config.warnings, [])
})

test('an admin listener off loopback is accepted (kubelet probes), with a warning saying what answers without the token', () => {
  const noToken = validate({ admin: { listen: '0.0.0.0:8182' } })
  assert.equal(noToken.ok, true)
  assert.ok(noToken.ok && noToken.config.warnings.some((w) => /admin listener 0\.0\.0\.0:8182 is not on loopback: \/healthz and \/readyz answer anyone.*\/metrics .* refused .* until an admin token is set/.test(w)))
  const withToken = validate({ admin: { listen: '0.0.0.0:8182', token: 'admin-token-0123456789' } })
  assert.ok(withToken.ok && withToken.config.warnings.some((w) => /\/metrics and the cache calls need the admin token/.test(w)))
})

test('env-only mode refuses LATCHKEY_LISTEN off loopback unless LATCHKEY_EXPOSED_REASON is set, naming the variables', () => {
  const env = { LATCHKEY_ALLOWED_HOSTS: 'api.example.com', LATCHKEY_SECRET: 'API_TOKEN', LATCHKEY_LISTEN: '0.0.0.0:8181' }
  const refused = configFromEnv(env, dir)
  assert.equal(refused.ok, false)
  const issue = refused.ok ? undefined : refused.issues.find((i) => i.path === 'LATCHKEY_LISTEN')
  assert.ok(issue)
  assert.match(issue.message, /LATCHKEY_EXPOSED_REASON/)
  const accepted = configFromEnv({ ...env, LATCHKEY_EXPOSED_REASON: REASON }, dir)
  assert.equal(accepted.ok, true)
  const short = configFromEnv({ ...env, LATCHKEY_EXPOSED_REASON: 'ok' }, dir)
  assert.ok(!short.ok && short.issues.some((i) => i.path === 'LATCHKEY_EXPOSED_REASON'))
})

test('latchkey check and run exit 2 naming the key for a proxy listener off loopback; --listen is held to the same rule', async () => {
  const file = path.join(dir, 'exposed.json')
  await writeFile(file, JSON.stringify({ ...minimal, listen: '0.0.0.0:0', admin: { listen: '0.0.0.0:0' } }))
  const check = await runBin(['check', '-c', file], { env: { API_TOKEN: 'x' } })
  assert.equal(check.code, 2, check.stderr)
  assert.match(check.stderr, /- listen: 0\.0\.0\.0:0 is not a loopback address/)
  const run = await runBin(['run', '-c', file], { env: { API_TOKEN: 'x' } })
  assert.equal(run.code, 2, run.stderr)
  assert.match(run.stderr, /listen: 0\.0\.0\.0:0 is not a loopback address/)

  const loop = path.join(dir, 'loopback.json')
  await writeFile(loop, JSON.stringify({ ...minimal, admin: { listen: '0.0.0.0:8182' } }))
  const ok = await runBin(['check', '-c', loop], { env: { API_TOKEN: 'x' } })
  assert.equal(ok.code, 0, ok.stderr)
  assert.match(ok.stdout, /warning: the admin listener 0\.0\.0\.0:8182 is not on loopback/)
  const flag = await runBin(['run', '-c', loop, '--listen', '0.0.0.0:0'], { env: { API_TOKEN: 'x' } })
  assert.equal(flag.code, 2, flag.stderr)
  assert.match(flag.stderr, /--listen: 0\.0\.0\.0:0 is not a loopback address/)
})
