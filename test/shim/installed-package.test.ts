/**
 * latchkey installed as a dependency: Node will not strip TypeScript types under
 * node_modules, so an installed copy must run the built JavaScript. This lays out
 * `<tmp>/node_modules/latchkey` the way `npm install` would (package.json, bin/, the
 * `npm run build` output; its dependencies linked from this checkout, since tests may not
 * reach a registry) and uses it from an application directory.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { promisify } from 'node:util'
import { buildDist } from '../../build/build.ts'
import { assertNoCanary } from '../helpers/log-capture.ts'
import { ROOT } from '../helpers/child.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const run = promisify(execFile)
const CANARY = 'installed-package-canary-4e1d'
let app: string
let pkg: string
let up: Upstream

before(async () => {
  app = await mkdtemp(path.join(tmpdir(), 'latchkey-installed-'))
  pkg = path.join(app, 'node_modules', 'latchkey')
  await mkdir(path.join(pkg, 'bin'), { recursive: true })
  await copyFile(path.join(ROOT, 'package.json'), path.join(pkg, 'package.json'))
  await copyFile(path.join(ROOT, 'bin', 'latchkey.js'), path.join(pkg, 'bin', 'latchkey.js'))
  await symlink(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'), 'dir')
  await buildDist(path.join(pkg, 'dist'))
  await writeFile(path.join(app, 'app.mjs'), 'const r = await fetch(process.argv[2]); process.stdout.write(await r.text())\n')
  up = await startUpstream()
})

after(async () => {
  await up?.close()
  await rm(app, { recursive: true, force: true })
})

test('the installed bin runs the built CLI', async () => {
  const { stdout } = await run(process.execPath, [path.join(pkg, 'bin', 'latchkey.js'), 'version'], { cwd: app, timeout: 30_000 })
  assert.match(stdout, /^latchkey \d+\.\d+\.\d+/)
})

test('node --import latchkey/register resolves to the built shim from node_modules and injects for the bound host only', async () => {
  const env = {
    PATH: process.env.PATH ?? '',
    LATCHKEY_ALLOWED_HOSTS: `127.0.0.1:${up.port}`,
    LATCHKEY_SECRET: 'APP_TOKEN',
    LATCHKEY_INSECURE: 'true',
    APP_TOKEN: CANARY,
  }
  const bound = await run(process.execPath, ['--import', 'latchkey/register', 'app.mjs', `${up.url}/bound`], { cwd: app, env, timeout: 30_000 })
  assert.equal(up.received.at(-1)?.headers.authorization, `Bearer ${CANARY}`)
  const other = await run(process.execPath, ['--import', 'latchkey/register', 'app.mjs', `http://localhost:${up.port}/other`], { cwd: app, env, timeout: 30_000 })
  assert.equal(up.received.at(-1)?.url, '/other')
  assert.equal(up.received.at(-1)?.headers.authorization, undefined)
  assertNoCanary([bound.stderr, other.stderr], [CANARY])
})
