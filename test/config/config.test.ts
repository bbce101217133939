import assert from 'node:assert/strict'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { configFromEnv } from '../../src/config/env-mode.ts'
import { loadConfigFile, parseConfigText, validateConfig } from '../../src/config/load.ts'
import { parseDuration } from '../../src/values/duration.ts'
import { assertNoCanary } from '../helpers/log-capture.ts'

let dir: string
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-config-'))
})
after(async () => {
  await rm(dir, { recursive: true, force: true })
})

const opts = () => ({ env: {}, baseDir: dir })
const minimal = {
  providers: { dev: { type: 'env' } },
  credentials: { api: { provider: 'dev', ref: 'API_TOKEN', hosts: ['api.example.com'], inject: { type: 'bearer' } } },
}

test('a minimal config gets the documented defaults and is frozen', () => {
  const r = validateConfig(minimal, opts())
  assert.ok(r.ok)
  assert.deepEqual(r.config.listen, { host: '127.0.0.1', port: 8181 })
  assert.deepEqual(r.config.admin.listen, { host: '127.0.0.1', port: 8182 })
  assert.equal(r.config.cache.ttl, 300_000)
  assert.equal(r.config.cache.maxStale, 900_000)
  assert.equal(r.config.cache.bustCooldown, 10_000)
  assert.equal(r.config.upstream.retryBodyLimit, 65_536)
  assert.equal(r.config.egress, 'deny')
  assert.equal(r.config.log.level, 'info')
  assert.ok(Object.isFrozen(r.config) && Object.isFrozen(r.config.credentials.api))
})

test('every problem in one config, schema and cross-field alike, is reported with its path in a single run, sorted by path', () => {
  const r = parseConfigText(
    `
listen: 127.0.0.1:99999
cache: { ttl: 5 minutes, maxEntries: -1 }
egress: maybe
surprise: true
providers:
  dev: { type: env }
  cloud: { type: nimbus }
  mnt: { type: file }
  az: { type: azure, vaultUrl: "not a url" }
credentials:
  a: { provider: dev, ref: A, hosts: [], inject: { type: bearer } }
  b: { provider: nope, ref: B, hosts: ["mlflow-*.example.com"], inject: { type: magic } }
  c: { provider: dev, ref: C, hosts: ["*.example.com"], inject: { type: bearer }, typo: 1 }
  d: { provider: dev, ref: D, hosts: ["api.example.com"], inject: { type: bearer } }
  e: { provider: dev, ref: E, hosts: ["*"], inject: { type: header, header: "X Bad" } }
routes:
  plain: { upstream: "http://api.example.com" }
  ftp: { upstream: "ftp://x.example" }
`,
    opts(),
  )
  assert.equal(r.ok, false)
  const issues = r.ok ? [] : r.issues
  const expected: Array<[string, RegExp]> = [
    ['', /unknown key "surprise"/],
    ['cache.maxEntries', /Too small/],
    ['cache.ttl', /invalid duration "5 minutes"/],
    ['credentials.a.hosts', /at least one host pattern/],
    ['credentials.b.hosts[0]', /wildcards are allowed only as the whole leftmost label/],
    ['credentials.b.inject.type', /.+/],
    ['credentials.b.provider', /no provider named "nope"/],
    ['credentials.c', /unknown key "typo"/],
    ['credentials.d.hosts', /can match the same host:port as "\*\.example\.com" of credential c/],
    ['credentials.e.hosts[0]', /a bare \* would match every host/],
    ['credentials.e.inject', /header name "X Bad" is not a valid HTTP field name/],
    ['egress', /Invalid option/],
    ['listen', /port 99999 is out of range/],
    ['providers.az.vaultUrl', /Invalid URL/],
    ['providers.cloud.type', /unknown provider type "nimbus"/],
    ['providers.mnt.dir', /expected string/],
    ['routes.ftp.upstream', /must be http:\/\/ or https:\/\//],
    ['routes.plain.upstream', /credential c is bound to this plain-http destination/],
    ['routes.plain.upstream', /credential d is bound to this plain-http destination/],
  ]
  const got = issues.map((i) => `${i.path} :: ${i.message}`)
  assert.equal(issues.length, expected.length, `one issue per planted problem:\n${got.join('\n')}`)
  expected.forEach(([p, re], n) => {
    assert.equal(issues[n]?.path, p, `issue #${n} path (got:\n${got.join('\n')})`)
    assert.match(issues[n]?.message ?? '', re, `issue #${n} at ${p}`)
  })
})

test('a provider option schema that throws is reported at that provider, not raised', () => {
  // The azure refinement reads vaultUrl with new URL(); a value z.url refused must not throw out of check.
  const r = validateConfig({ providers: { az: { type: 'azure', vaultUrl: 'not a url' } } }, opts())
  assert.equal(r.ok, false)
  assert.deepEqual(r.ok ? [] : r.issues.map((i) => i.path), ['providers.az.vaultUrl'])
})

const CHECK_CANARY = 'check-canary-value-4e71c0d9'
test('check messages name the ${env:...} reference instead of echoing the value it resolved to, in every key', () => {
  const ref = '${env:LEAKY}'
  const r = validateConfig(
    {
      listen: ref,
      admin: { listen: `${ref}:99` },
      log: { level: ref },
      cache: { ttl: ref, maxStale: `${ref}s` },
      egress: ref,
      providers: { x: { type: ref }, v: { type: 'vault', address: ref }, f: { type: 'file', dir: ref, maxBytes: ref } },
      credentials: {
        a: { provider: ref, ref: 'R', hosts: [ref, `*.${ref}`, `${ref}:x`, `mlflow-*.${ref}`], inject: { type: 'header', header: `${ref} x`, value: ref }, ttl: ref },
        b: { provider: 'f', ref: 'R', hosts: [`api.${ref}.example.com`], inject: { type: 'header', header: `${ref}${'y'.repeat(80)} z` } },
      },
      routes: { r: { upstream: ref }, s: { upstream: `ftp://${ref}` } },
    },
    { env: { LEAKY: CHECK_CANARY }, baseDir: dir },
  )
  assert.equal(r.ok, false)
  const text = r.ok ? '' : r.issues.map((i) => `${i.path}: ${i.message}`).join('\n')
  assert.ok(r.ok || r.issues.length >= 12, `the planted problems are reported:\n${text.split(CHECK_CANARY).join('<canary>')}`)
  assertNoCanary(text, [CHECK_CANARY])
  // A truncated or partial echo is hidden too.
  for (let n = 12; n <= CHECK_CANARY.length; n++) assert.ok(!text.includes(CHECK_CANARY.slice(0, n)), `no prefix of ${n} characters`)
  assert.match(text, /cache\.ttl: invalid duration \(value of \$\{env:LEAKY\}\)/)
  assert.match(text, /routes\.r\.upstream: not an absolute URL: \(value of \$\{env:LEAKY\}\)/)
})

test('a mixed-case value is hidden in its lower-cased form too (host patterns are normalised before they are quoted)', () => {
  const MIXED = 'AbCdEf9Gh2KqMixedCanary'
  const ref = '${env:TOK}'
  const r = validateConfig(
    {
      providers: { dev: { type: 'env' } },
      credentials: {
        a: { provider: 'dev', ref: 'R', hosts: [`*.${ref}`], inject: { type: 'bearer' } },
        b: { provider: 'dev', ref: 'R', hosts: [`${ref}.example.com`, `*.${ref}.example.com`], inject: { type: 'bearer' } },
        c: { provider: 'dev', ref: 'R', hosts: [`${ref}.example.com`], inject: { type: 'bearer' } },
      },
    },
    { env: { TOK: MIXED }, baseDir: dir },
  )
  assert.equal(r.ok, false)
  const text = r.ok ? '' : r.issues.map((i) => `${i.path}: ${i.message}`).join('\n')
  assert.match(text, /credentials\.a\.hosts\[0\]/, 'the too-broad wildcard is reported')
  assertNoCanary(text, [MIXED, MIXED.toLowerCase(), MIXED.toUpperCase()])
})

test('cross-field problems are all reported: unknown provider type, missing provider, bad wildcard', () => {
  const r = validateConfig(
    {
      providers: { dev: { type: 'env' }, cloud: { type: 'nimbus' } },
      credentials: {
        b: { provider: 'nope', ref: 'B', hosts: ['mlflow-*.example.com'], inject: { type: 'bearer' } },
        c: { provider: 'dev', ref: 'C', hosts: ['*'], inject: { type: 'bearer' } },
      },
    },
    opts(),
  )
  assert.equal(r.ok, false)
  const byPath = new Map(r.ok ? [] : r.issues.map((i) => [i.path, i.message]))
  assert.match(byPath.get('providers.cloud.type') ?? '', /unknown provider type "nimbus"/)
  assert.match(byPath.get('credentials.b.provider') ?? '', /no provider named "nope"/)
  assert.ok(byPath.has('credentials.b.hosts[0]'))
  assert.ok(byPath.has('credentials.c.hosts[0]'))
})

test('two credentials whose patterns can match the same destination are a config error', () => {
  const r = validateConfig(
    {
      providers: { dev: { type: 'env' } },
      credentials: {
        one: { provider: 'dev', ref: 'A', hosts: ['*.example.com'], inject: { type: 'bearer' } },
        two: { provider: 'dev', ref: 'B', hosts: ['api.example.com'], inject: { type: 'bearer' } },
      },
    },
    opts(),
  )
  assert.equal(r.ok, false)
  assert.ok(!r.ok && r.issues.some((i) => /same host:port/.test(i.message)))
})

test('a credential bound to a plain-http route is refused unless it says insecure: true', () => {
  const raw = {
    providers: { dev: { type: 'env' } },
    credentials: { api: { provider: 'dev', ref: 'A', hosts: ['127.0.0.1:9000'], inject: { type: 'bearer' } } },
    routes: { api: { upstream: 'http://127.0.0.1:9000' } },
  }
  const refused = validateConfig(raw, opts())
  assert.equal(refused.ok, false)
  assert.ok(!refused.ok && refused.issues.some((i) => i.path === 'routes.api.upstream' && /insecure: true/.test(i.message)))
  const allowed = validateConfig({ ...raw, credentials: { api: { ...raw.credentials.api, insecure: true } } }, opts())
  assert.ok(allowed.ok)
  assert.ok(allowed.config.warnings.some((w) => /insecure/.test(w)), 'the loader warns about insecure credentials')
})

test('a host pattern on port 80 without insecure: true is warned about (the forward proxy upgrades it to TLS on 443); with insecure it is not', () => {
  const raw = {
    providers: { dev: { type: 'env' } },
    credentials: { api: { provider: 'dev', ref: 'A', hosts: ['api.example.com:80', 'other.example.com'], inject: { type: 'bearer' } } },
  }
  const r = validateConfig(raw, opts())
  assert.ok(r.ok)
  assert.deepEqual(
    r.config.warnings.filter((w) => /port 80/.test(w)),
    ['credential api: host pattern api.example.com:80 names port 80, but credentialed http:// requests go over TLS to port 443; write the host without :80 (or set insecure: true for plain http)'],
  )
  const plain = validateConfig({ ...raw, credentials: { api: { ...raw.credentials.api, insecure: true } } }, opts())
  assert.ok(plain.ok)
  assert.ok(!plain.config.warnings.some((w) => /port 80/.test(w)))
})

test('route upstreams with userinfo, query or a non-http scheme are refused', () => {
  const r = validateConfig({ routes: { a: { upstream: 'https://u:p@x.example' }, b: { upstream: 'https://x.example/?q=1' }, c: { upstream: 'ftp://x.example' }, d: { upstream: 'not a url' } } }, opts())
  assert.equal(r.ok, false)
  assert.deepEqual(r.ok ? [] : r.issues.map((i) => i.path).sort(), ['routes.a.upstream', 'routes.b.upstream', 'routes.c.upstream', 'routes.d.upstream'])
})

test('${env:NAME} and ${file:PATH} are substituted, and an unset variable or missing file is reported with its path', async () => {
  await writeFile(path.join(dir, 'admin-token'), 'file-admin-token-0123456789\n')
  const good = validateConfig({ ...minimal, admin: { token: '${file:admin-token}' }, listen: '${env:LISTEN}' }, { env: { LISTEN: '127.0.0.1:9999' }, baseDir: dir })
  assert.ok(good.ok)
  assert.equal(good.config.admin.token, 'file-admin-token-0123456789')
  assert.equal(good.config.listen.port, 9999)
  const bad = validateConfig({ ...minimal, admin: { token: '${file:nope}' }, listen: '${env:UNSET}' }, opts())
  assert.equal(bad.ok, false)
  assert.deepEqual(bad.ok ? [] : bad.issues.map((i) => i.path).sort(), ['admin.token', 'listen'].sort())
})

test('the admin token file is read at load and a world-readable one is warned about', async () => {
  const file = path.join(dir, 'token')
  await writeFile(file, 'a-long-enough-admin-token\n')
  await chmod(file, 0o644)
  const r = validateConfig({ ...minimal, admin: { tokenFile: 'token' } }, opts())
  assert.ok(r.ok)
  assert.equal(r.config.admin.token, 'a-long-enough-admin-token')
  assert.ok(r.config.warnings.some((w) => /world-readable/.test(w)))
  assert.ok(Object.isFrozen(r.config.warnings), 'the warnings are frozen with the rest of the config')
})

test('a world-readable config file with an inline secret is warned about, and that config and its warnings are frozen too', async () => {
  const file = path.join(dir, 'inline.yaml')
  await writeFile(file, 'admin:\n  token: inline-admin-token-0123456789\nproviders:\n  dev: { type: env }\ncredentials:\n  api: { provider: dev, ref: API_TOKEN, hosts: [api.example.com], inject: { type: bearer }, insecure: true }\n')
  await chmod(file, 0o644)
  const r = loadConfigFile(file, {})
  assert.ok(r.ok)
  assert.deepEqual(
    r.config.warnings.map((w) => w.replace(file, 'FILE')),
    ['credential api has insecure: true: it may be sent over plain http (loopback and dev only)', 'config file FILE is world-readable and may hold secret material (chmod 600)'],
  )
  assert.ok(Object.isFrozen(r.config) && Object.isFrozen(r.config.warnings))
  assert.throws(() => (r.config.warnings as string[]).push('late'), TypeError)
})

test('durations accept ms, s, m, h and plain seconds, and reject anything else', () => {
  assert.equal(parseDuration('500ms'), 500)
  assert.equal(parseDuration('30s'), 30_000)
  assert.equal(parseDuration('5m'), 300_000)
  assert.equal(parseDuration('1h'), 3_600_000)
  assert.equal(parseDuration(45), 45_000)
  assert.equal(parseDuration('45'), 45_000)
  assert.equal(parseDuration('5 minutes'), undefined)
  assert.equal(parseDuration('-1s'), undefined)
})

test('YAML syntax errors and JSON configs are both handled', async () => {
  const bad = parseConfigText('listen: [unclosed', opts())
  assert.equal(bad.ok, false)
  await writeFile(path.join(dir, 'c.json'), JSON.stringify(minimal))
  assert.ok(loadConfigFile(path.join(dir, 'c.json'), {}).ok)
  assert.equal(loadConfigFile(path.join(dir, 'missing.yaml'), {}).ok, false)
})

test('env-only mode builds one credential from LATCHKEY_* variables and refuses an empty allowlist', () => {
  const r = configFromEnv({ LATCHKEY_ALLOWED_HOSTS: 'api.example.com, *.svc.example.com', LATCHKEY_SECRET: 'TOKEN', LATCHKEY_AUTH: 'header:X-Api-Key', LATCHKEY_TTL: '30s', LATCHKEY_LISTEN: '127.0.0.1:0' }, dir)
  assert.ok(r.ok)
  const c = r.config.credentials.default
  assert.equal(c?.injector.headerName, 'x-api-key')
  assert.equal(c?.ttlMs, 30_000)
  assert.deepEqual(c?.patterns.map((p) => p.source), ['api.example.com', '*.svc.example.com'])
  const empty = configFromEnv({ LATCHKEY_ALLOWED_HOSTS: ' , ', LATCHKEY_SECRET: 'T' }, dir)
  assert.equal(empty.ok, false)
  assert.ok(!empty.ok && empty.issues[0]?.path === 'LATCHKEY_ALLOWED_HOSTS')
  const badAuth = configFromEnv({ LATCHKEY_ALLOWED_HOSTS: 'a.example.com', LATCHKEY_SECRET: 'T', LATCHKEY_AUTH: 'digest', LATCHKEY_TTL: 'soon' }, dir)
  assert.equal(badAuth.ok, false)
  assert.ok(!badAuth.ok && badAuth.issues.some((i) => i.path === 'LATCHKEY_AUTH'))
})
