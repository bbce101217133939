/**
 * A fresh install as a library user gets it: `npm pack` (prepack builds dist/), then
 * `npm install <tarball>` into an empty project with the npm and Node on PATH (what a user
 * has), from the local npm cache first. Counts npm's warnings: the only ones allowed are
 * EBADENGINE when that Node is older than 24 (the README's quick start says why), and no cloud
 * SDK is pulled in. Skipped, with the reason, when the npm registry cannot be reached.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, test } from 'node:test'
import { ROOT } from './helpers/child.ts'

const work = mkdtempSync(path.join(tmpdir(), 'latchkey-install-'))
after(() => rmSync(work, { recursive: true, force: true }))

// The user's npm and node: this repository's node_modules/.bin (Node 24) is not on their PATH.
const userPath = (process.env.PATH ?? '').split(path.delimiter).filter((p) => !p.includes(`${path.sep}node_modules${path.sep}`)).join(path.delimiter)
const env = { PATH: userPath, HOME: process.env.HOME ?? work, npm_config_cache: process.env.npm_config_cache ?? path.join(process.env.HOME ?? work, '.npm'), npm_config_update_notifier: 'false' }
const npm = (args: string[], cwd: string, timeout = 150_000) => spawnSync('npm', args, { cwd, env, encoding: 'utf8', timeout })

const ping = npm(['ping', '--fetch-timeout=8000', '--fetch-retries=0'], work, 20_000)
const offline = ping.status === 0 ? false : `the npm registry cannot be reached (${(ping.stderr || ping.error?.message || '').trim().split('\n')[0]})`

test('npm install of the packed tarball prints no warning but the explained EBADENGINE, pulls no cloud SDK, and the library and shim load', { skip: offline, timeout: 300_000 }, () => {
  const packed = npm(['pack', '--pack-destination', work, '--silent'], ROOT)
  assert.equal(packed.status, 0, packed.stderr)
  const tarball = path.join(work, packed.stdout.trim().split('\n').at(-1) as string)
  assert.ok(existsSync(tarball), tarball)

  const app = path.join(work, 'app')
  mkdirSync(app)
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }))
  const r = npm(['install', tarball, '--prefer-offline', '--no-audit', '--no-fund'], app)
  assert.equal(r.status, 0, r.stderr)
  const warnings = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => /^npm warn/i.test(l))
  const userNode = spawnSync('node', ['-p', 'process.versions.node'], { env, encoding: 'utf8' }).stdout.trim()
  const other = warnings.filter((l) => !/EBADENGINE/.test(l))
  assert.deepEqual(other, [], 'warnings other than the engine one')
  if (Number(userNode.split('.')[0]) >= 24) assert.deepEqual(warnings, [], `no warning at all on Node ${userNode}`)

  const modules = readdirSync(path.join(app, 'node_modules'))
  for (const sdk of ['node-vault', '@aws-sdk', '@azure', '@google-cloud', 'google-gax']) assert.ok(!modules.includes(sdk), `${sdk} is not installed for an env/file user`)
  assert.ok(existsSync(path.join(app, 'node_modules', 'latchkey', 'schema', 'latchkey.schema.json')), 'the JSON Schema ships')

  // The library and the shim load on Node 24 (this process's node), from node_modules.
  const load = spawnSync(process.execPath, ['--import', 'latchkey/register', '-e', "const m = await import('latchkey'); console.log(typeof m)"], { cwd: app, env: { PATH: userPath, LATCHKEY_ALLOWED_HOSTS: 'api.example.com', LATCHKEY_SECRET: 'T', T: 'install-test-token' }, encoding: 'utf8', timeout: 30_000 })
  assert.equal(load.status, 0, load.stderr)
  assert.match(load.stdout, /object/)

  // A configuration that needs a cloud SDK the user did not install names the package to install:
  // a provider's and a minted credential's alike, never Node's ERR_MODULE_NOT_FOUND.
  writeFileSync(
    path.join(app, 'latchkey.yaml'),
    [
      'providers: { kv: { type: vault, address: "http://127.0.0.1:1", auth: { method: token, token: "${env:VT}" } } }',
      'credentials:',
      '  stored: { provider: kv, ref: secret/data/app, field: token, hosts: [api.example.com], inject: { type: bearer } }',
      '  bq: { hosts: [bigquery.googleapis.com], inject: { type: gcp-access-token } }',
      '',
    ].join('\n'),
  )
  const doctor = spawnSync(process.execPath, [path.join(app, 'node_modules', 'latchkey', 'bin', 'latchkey.js'), 'doctor', '-c', 'latchkey.yaml'], { cwd: app, env: { PATH: userPath, VT: 'install-test-vault-token' }, encoding: 'utf8', timeout: 60_000 })
  const said = `${doctor.stdout}\n${doctor.stderr}`
  assert.equal(doctor.status, 1, said)
  assert.match(said, /npm install node-vault/)
  assert.match(said, /npm install google-auth-library/)
  assert.doesNotMatch(said, /ERR_MODULE_NOT_FOUND|install-test-vault-token/)
})

test('npm install from a git URL of the clone builds dist/ on install (prepare): the bin, the library and the shim work, and no cloud SDK is pulled', { skip: offline, timeout: 300_000 }, () => {
  // What a user gets from `npm install git+https://…/latchkey.git`: npm clones the committed tree and runs prepare.
  const app = path.join(work, 'git-app')
  mkdirSync(app)
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'git-app', private: true, type: 'module' }))
  const r = npm(['install', `git+file://${ROOT}`, '--prefer-offline', '--no-audit', '--no-fund'], app, 280_000)
  assert.equal(r.status, 0, r.stderr)
  const pkg = path.join(app, 'node_modules', 'latchkey')
  assert.ok(existsSync(path.join(pkg, 'dist', 'cli', 'latchkey.js')), 'prepare built dist/')
  const modules = readdirSync(path.join(app, 'node_modules'))
  for (const sdk of ['node-vault', '@aws-sdk', '@azure', '@google-cloud', 'google-gax']) assert.ok(!modules.includes(sdk), `${sdk} is not installed`)
  const version = spawnSync(process.execPath, [path.join(pkg, 'bin', 'latchkey.js'), '--version'], { cwd: app, env: { PATH: userPath }, encoding: 'utf8', timeout: 30_000 })
  assert.match(version.stdout, /^latchkey \d+\.\d+\.\d+/, version.stderr)
  const load = spawnSync(process.execPath, ['--import', 'latchkey/register', '-e', "const m = await import('latchkey'); console.log(typeof m)"], { cwd: app, env: { PATH: userPath, LATCHKEY_ALLOWED_HOSTS: 'api.example.com', LATCHKEY_SECRET: 'T', T: 'install-test-token' }, encoding: 'utf8', timeout: 30_000 })
  assert.equal(load.status, 0, load.stderr)
  assert.match(load.stdout, /object/)
})
