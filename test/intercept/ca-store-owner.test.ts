import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { chmod, chown, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { pathToFileURL } from 'node:url'
import { bundlePathFor, loadOrCreateCa } from '../../src/intercept/ca-store.ts'
import { ROOT } from '../helpers/child.ts'

// A public CA copy owned by someone else (an operator's root-owned, read-only file): latchkey,
// running as another user, cannot chmod it. Root can chmod any file, so latchkey runs here as
// a child with uid/gid 65534 ("nobody") while root owns the public copies.

const IS_ROOT = process.getuid?.() === 0
const SKIP = IS_ROOT ? false : 'needs root: it hands the public CA files to root and runs latchkey as uid 65534'
const NOBODY = 65534
const DAY = 86_400_000
const MODULE = pathToFileURL(path.join(ROOT, 'src', 'intercept', 'ca-store.ts')).href

let dir: string
before(async () => {
  if (!IS_ROOT) return
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-ca-owner-'))
  await chmod(dir, 0o755) // nobody must reach caDir and the public directory
})
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true })
})

/** A CA created (as root) in `<name>/ca`, handed to nobody, with public copies in `<name>/shared` left to root. */
async function prepare(name: string): Promise<{ caDir: string; publicCaFile: string; bundleFile: string }> {
  const caDir = path.join(dir, name, 'ca')
  const publicCaFile = path.join(dir, name, 'shared', 'latchkey-ca.pem')
  const r = await loadOrCreateCa({ caDir, publicCaFile, leafTtlMs: DAY, scope: { dns: ['api.example.com'], ip: [] } })
  await chmod(path.join(dir, name), 0o755) // created 0700 along with caDir
  for (const f of [caDir, r.files.keyFile, r.files.certFile, r.files.bundleFile]) await chown(f, NOBODY, NOBODY)
  return { caDir, publicCaFile, bundleFile: bundlePathFor(publicCaFile) }
}

/**
 * loadOrCreateCa in a child running as nobody; its outcome as JSON (bounded to 20 s). The
 * child gets this process's environment: SSL_CERT_FILE / SSL_CERT_DIR change the system roots
 * in the trust bundle, and the bundle must come out the same as the one prepared here.
 */
function loadAsNobody(caDir: string, publicCaFile: string): Promise<{ ok: boolean; warnings?: string[]; error?: string; stderr: string }> {
  const script = `import { loadOrCreateCa } from ${JSON.stringify(MODULE)}
try {
  const r = await loadOrCreateCa({ caDir: ${JSON.stringify(caDir)}, publicCaFile: ${JSON.stringify(publicCaFile)}, leafTtlMs: ${DAY}, scope: { dns: ['api.example.com'], ip: [] } })
  process.stdout.write(JSON.stringify({ ok: true, warnings: r.warnings }))
} catch (err) {
  process.stdout.write(JSON.stringify({ ok: false, error: String(err.message) + ' ' + JSON.stringify(err.issues) }))
}`
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { uid: NOBODY, gid: NOBODY, env: process.env, cwd: ROOT })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    child.on('error', reject)
    child.on('close', () => {
      clearTimeout(timer)
      try {
        resolve({ ...(JSON.parse(stdout) as { ok: boolean }), stderr })
      } catch {
        reject(new Error(`no result from the child: ${stdout}\n${stderr}`))
      }
    })
  })
}

const mode = async (p: string) => ((await stat(p)).mode & 0o777).toString(8)

test('a public CA copy with the right content, owned by root and mode 0444, does not stop a latchkey running as another user', { skip: SKIP }, async () => {
  const { caDir, publicCaFile, bundleFile } = await prepare('read-only')
  const before = await readFile(publicCaFile, 'utf8')
  for (const f of [publicCaFile, bundleFile]) await chmod(f, 0o444)
  const r = await loadAsNobody(caDir, publicCaFile)
  assert.equal(r.ok, true, `${r.error} ${r.stderr}`)
  // Everyone can read it already: nothing worth a warning.
  assert.deepEqual(r.warnings, [])
  for (const f of [publicCaFile, bundleFile]) assert.equal(await mode(f), '444', f)
  assert.equal(await readFile(publicCaFile, 'utf8'), before)
})

test('a right-content public copy that other users cannot read and latchkey cannot chmod is warned about, naming intercept.publicCaFile', { skip: SKIP }, async () => {
  const { caDir, publicCaFile } = await prepare('group-only')
  // Readable by nobody through the group, not by other users.
  await chown(publicCaFile, 0, NOBODY)
  await chmod(publicCaFile, 0o440)
  const r = await loadAsNobody(caDir, publicCaFile)
  assert.equal(r.ok, true, `${r.error} ${r.stderr}`)
  assert.equal(r.warnings?.length, 1, JSON.stringify(r.warnings))
  assert.match(r.warnings?.[0] ?? '', /^intercept\.publicCaFile .*latchkey-ca\.pem already holds the right content but is mode 440, and it cannot be changed to 644 \(EPERM\)/)
  assert.equal(await mode(publicCaFile), '440')
})

test('a public copy with stale content that latchkey cannot replace is still an error naming intercept.publicCaFile', { skip: SKIP }, async () => {
  const { caDir, publicCaFile } = await prepare('stale')
  await chmod(publicCaFile, 0o644)
  await writeFile(publicCaFile, 'stale\n')
  await chmod(publicCaFile, 0o444)
  const r = await loadAsNobody(caDir, publicCaFile)
  assert.equal(r.ok, false)
  assert.match(r.error ?? '', /intercept\.publicCaFile/)
  assert.match(r.error ?? '', /cannot write .*latchkey-ca\.pem \(EACCES\)/)
})
