import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { rootCertificates } from 'node:tls'
import { bundlePathFor, loadOrCreateCa } from '../../src/intercept/ca-store.ts'
import { CertificateAuthority } from '../../src/intercept/certificate-authority.ts'
import { ConfigError } from '../../src/errors.ts'
import { validateConfig } from '../../src/config/load.ts'
import { LeafCache } from '../../src/intercept/leaf-cache.ts'

let dir: string
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-ca-'))
})
after(async () => {
  await rm(dir, { recursive: true, force: true })
})

const DAY = 86_400_000
const SCOPE = { dns: ['api.example.com'], ip: [] }

test('a missing CA is created with a 0700 directory, a 0600 key file and a public certificate and bundle', async () => {
  const caDir = path.join(dir, 'fresh', 'ca')
  const publicCaFile = path.join(dir, 'shared', 'latchkey-ca.pem')
  const r = await loadOrCreateCa({ caDir, publicCaFile, leafTtlMs: DAY, scope: SCOPE })
  assert.equal(r.created, true)
  assert.deepEqual(r.warnings, [])
  assert.equal((await stat(caDir)).mode & 0o777, 0o700)
  assert.equal((await stat(r.files.keyFile)).mode & 0o777, 0o600)
  assert.equal((await stat(r.files.certFile)).mode & 0o777, 0o644)
  const cert = await readFile(r.files.certFile, 'utf8')
  assert.equal(cert, r.ca.certPem)
  assert.ok(new X509Certificate(cert).ca, 'the certificate is a CA')
  assert.match(new X509Certificate(cert).publicKey.asymmetricKeyDetails?.namedCurve ?? '', /prime256v1|P-256/)
  const bundle = await readFile(r.files.bundleFile, 'utf8')
  assert.ok(bundle.endsWith(cert), 'the bundle ends with the CA')
  assert.ok(bundle.includes((rootCertificates[0] as string).trim()), 'the bundle keeps the public roots')
  assert.equal(await readFile(publicCaFile, 'utf8'), cert)
  assert.equal(r.publicFiles?.bundleFile, path.join(dir, 'shared', 'latchkey-ca-bundle.pem'))
  assert.equal(await readFile(r.publicFiles.bundleFile, 'utf8'), bundle)
})

test('under umask 077 the public certificate and bundle are still 0644 and a public directory latchkey creates is 0755; the key stays 0600 and caDir 0700', async () => {
  const old = process.umask(0o077)
  try {
    const caDir = path.join(dir, 'umask', 'ca')
    const publicCaFile = path.join(dir, 'umask', 'pub', 'nested', 'latchkey-ca.pem')
    const r = await loadOrCreateCa({ caDir, publicCaFile, leafTtlMs: DAY, scope: SCOPE })
    const mode = async (p: string) => ((await stat(p)).mode & 0o777).toString(8)
    assert.equal(await mode(caDir), '700')
    assert.equal(await mode(r.files.keyFile), '600')
    for (const f of [r.files.certFile, r.files.bundleFile, publicCaFile, bundlePathFor(publicCaFile)]) assert.equal(await mode(f), '644', f)
    for (const d of [path.join(dir, 'umask', 'pub'), path.dirname(publicCaFile)]) assert.equal(await mode(d), '755', d)
    // A copy left unreadable by an earlier start (same content) is fixed too.
    await chmod(publicCaFile, 0o600)
    await loadOrCreateCa({ caDir, publicCaFile, leafTtlMs: DAY, scope: SCOPE })
    assert.equal(await mode(publicCaFile), '644')
  } finally {
    process.umask(old)
  }
})

test('an existing public directory keeps its mode', async () => {
  const shared = path.join(dir, 'shared-existing')
  await mkdir(shared, { mode: 0o750 })
  await chmod(shared, 0o750)
  await loadOrCreateCa({ caDir: path.join(dir, 'shared-existing-ca'), publicCaFile: path.join(shared, 'ca.pem'), leafTtlMs: DAY, scope: SCOPE })
  assert.equal((await stat(shared)).mode & 0o777, 0o750)
})

test('an existing CA is loaded, not replaced, and a deleted public certificate is rewritten', async () => {
  const caDir = path.join(dir, 'reuse')
  const first = await loadOrCreateCa({ caDir, leafTtlMs: DAY, scope: SCOPE })
  await rm(first.files.certFile)
  const second = await loadOrCreateCa({ caDir, leafTtlMs: DAY, scope: SCOPE })
  assert.equal(second.created, false)
  assert.equal(second.ca.certPem, first.ca.certPem)
  assert.equal(await readFile(second.files.certFile, 'utf8'), first.ca.certPem)
})

test('two processes starting at once end up with one CA', async () => {
  const caDir = path.join(dir, 'race')
  const results = await Promise.all([1, 2, 3, 4].map(() => loadOrCreateCa({ caDir, leafTtlMs: DAY, scope: SCOPE })))
  assert.equal(new Set(results.map((r) => r.ca.certPem)).size, 1)
  assert.equal(results.filter((r) => r.created).length, 1)
})

test('an operator CA in two files (ca-key.pem with the key only, ca.pem) is used, and a loose key mode is warned about', async () => {
  const caDir = path.join(dir, 'operator')
  await mkdir(caDir, { mode: 0o700 })
  const ca = await CertificateAuthority.create({ commonName: 'operator CA' })
  await writeFile(path.join(caDir, 'ca-key.pem'), ca.keyPem, { mode: 0o644 })
  await writeFile(path.join(caDir, 'ca.pem'), ca.certPem)
  const r = await loadOrCreateCa({ caDir, leafTtlMs: DAY, scope: SCOPE })
  assert.equal(r.created, false)
  assert.equal(r.ca.certPem, ca.certPem)
  assert.equal(r.warnings.length, 2)
  assert.match(r.warnings[0] as string, /readable by other users.*chmod 600/)
  // Never replaced (it is the operator's), but its missing name constraints are said out loud.
  assert.match(r.warnings[1] as string, /brought by the operator and carries no name constraints/)
})

test("an operator's CA that expires before one leaf would is refused with a message naming intercept.caDir", async () => {
  const caDir = path.join(dir, 'expiring')
  await mkdir(caDir, { mode: 0o700 })
  const ca = await CertificateAuthority.create({ lifetimeMs: 2 * DAY, scope: SCOPE })
  // The operator's: key and certificate in their own files (latchkey never replaces those).
  await writeFile(path.join(caDir, 'ca-key.pem'), ca.keyPem, { mode: 0o600 })
  await writeFile(path.join(caDir, 'ca.pem'), ca.certPem)
  await assert.rejects(loadOrCreateCa({ caDir, leafTtlMs: 7 * DAY, scope: SCOPE }), (err: unknown) => {
    assert.ok(err instanceof ConfigError)
    assert.equal(err.issues[0]?.path, 'intercept.caDir')
    assert.match(err.message, /expires .* delete/)
    return true
  })
})

test("latchkey's own CA is replaced at start when less than four months of its year are left; with more it is kept", async () => {
  const caDir = path.join(dir, 'ageing')
  await mkdir(caDir, { mode: 0o700 })
  const keep = await CertificateAuthority.create({ lifetimeMs: 200 * DAY, scope: SCOPE })
  await writeFile(path.join(caDir, 'ca-key.pem'), keep.keyPem + keep.certPem, { mode: 0o600 })
  const kept = await loadOrCreateCa({ caDir, leafTtlMs: DAY, scope: SCOPE })
  assert.equal(kept.rotated, false)
  assert.equal(kept.ca.certPem, keep.certPem)
  const old = await CertificateAuthority.create({ lifetimeMs: 100 * DAY, scope: SCOPE })
  await writeFile(path.join(caDir, 'ca-key.pem'), old.keyPem + old.certPem, { mode: 0o600 })
  const r = await loadOrCreateCa({ caDir, leafTtlMs: DAY, scope: SCOPE })
  assert.equal(r.rotated, true)
  assert.notEqual(r.ca.certPem, old.certPem)
  assert.deepEqual(r.ca.scope, SCOPE)
  const left = (r.ca.notAfter.getTime() - Date.now()) / DAY
  assert.ok(left > 364 && left <= 366, `the new CA lives a year (${left.toFixed(1)} days)`)
  assert.ok(r.warnings.some((w) => /less than four months left, so a new one \(valid one year\) replaced it/.test(w)))
  assert.equal(await readFile(r.files.certFile, 'utf8'), r.ca.certPem)
})

test('a key file without a key is refused', async () => {
  const caDir = path.join(dir, 'garbage')
  await mkdir(caDir, { mode: 0o700 })
  await writeFile(path.join(caDir, 'ca-key.pem'), 'not a key', { mode: 0o600 })
  await assert.rejects(loadOrCreateCa({ caDir, leafTtlMs: DAY, scope: SCOPE }), /PRIVATE KEY/)
})

test('the bundle path sits next to the public certificate', () => {
  assert.equal(bundlePathFor('/shared/ca.pem'), '/shared/ca-bundle.pem')
  assert.equal(bundlePathFor('/shared/ca.crt'), '/shared/ca-bundle.pem')
  assert.equal(bundlePathFor('/shared/ca'), '/shared/ca-bundle.pem')
})

test('leaves are issued once per host under concurrency, and renewed in the background after 3/4 of their life', async () => {
  const ca = await CertificateAuthority.create()
  let now = Date.now()
  const leaves = new LeafCache({ ca, leafTtlMs: 3_600_000, now: () => now })
  const contexts = await Promise.all(Array.from({ length: 10 }, () => leaves.get('api.example.com')))
  assert.equal(leaves.issued, 1)
  assert.equal(new Set(contexts).size, 1)
  await leaves.get('[::1]')
  assert.equal(leaves.issued, 2)
  now += 0.5 * 3_600_000
  assert.equal(await leaves.get('api.example.com'), contexts[0])
  assert.equal(leaves.issued, 2)
  now += 0.3 * 3_600_000
  assert.equal(await leaves.get('api.example.com'), contexts[0], 'the current leaf is served while its successor is issued')
  for (let i = 0; i < 100 && leaves.issued < 3; i++) await new Promise((r) => setTimeout(r, 10))
  assert.equal(leaves.issued, 3)
  assert.notEqual(await leaves.get('api.example.com'), contexts[0])
  now += 2 * 3_600_000
  const after = leaves.issued
  await leaves.get('api.example.com')
  assert.equal(leaves.issued, after + 1, 'an expired leaf is replaced before use')
})

test('intercept.leafTtl is bounded to 5m..7d, and a value outside is reported with its path', () => {
  const leafTtl = (v: string) => {
    const r = validateConfig({ intercept: { enabled: true, leafTtl: v } }, { env: {}, baseDir: dir })
    return r.ok ? r.config.intercept.leafTtl : r.issues.map((i) => `${i.path}: ${i.message}`).join('; ')
  }
  assert.equal(leafTtl('5m'), 300_000)
  assert.equal(leafTtl('168h'), 7 * DAY)
  assert.match(String(leafTtl('299s')), /^intercept\.leafTtl: .*at least 5m/)
  assert.match(String(leafTtl('169h')), /^intercept\.leafTtl: .*at most 7d/)
  const defaults = validateConfig({}, { env: {}, baseDir: dir })
  assert.ok(defaults.ok)
  assert.equal(defaults.config.intercept.leafTtl, DAY)
})
