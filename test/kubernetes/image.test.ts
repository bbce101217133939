/**
 * The container image, without Docker: run what `npm run build` produces the way the image
 * runs it — /app holding dist/ + package.json + a production-only node_modules (laid out from
 * package-lock.json, as `npm ci --omit=dev` would, so a runtime import of a dev package fails
 * here as it would in the image), owned by root and read-only, the process as a non-root uid,
 * the config in a read-only directory, writes only to the two directories a pod mounts as
 * emptyDirs (CA state, shared public CA) — and check /readyz, a proxied request, and a clean
 * SIGTERM.
 *
 * As root the process runs as uid 65534 on a root-owned tree. Otherwise it runs as the
 * current uid on a tree whose modes are read-only (the owner could chmod them back, latchkey
 * does not), and the test says so in a diagnostic.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { buildDist } from '../../build/build.ts'
import { DEFAULT_SIDECAR_OPTIONS, sidecarNodeOptions } from '../../src/injector/sidecar.ts'
import { copyProductionNodeModules } from './production-modules.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const NOBODY = 65534
const CANARY_ENV = 'canary-env-secret-7f3a91'
const CANARY_FILE = 'canary-file-secret-c0ffee42'
const isRoot = process.getuid?.() === 0
/** What the pod gives the sidecar: its memory limit and the heap cap derived from it. */
const LIMIT_MIB = Number(/^(\d+)Mi$/.exec(DEFAULT_SIDECAR_OPTIONS.resources.limits.memory)?.[1])
const NODE_OPTIONS = sidecarNodeOptions(DEFAULT_SIDECAR_OPTIONS.resources.limits.memory)
/** Root drops to nobody; anyone else runs as themselves (spawn's uid/gid need CAP_SETUID). */
const AS = isRoot ? { uid: NOBODY, gid: NOBODY } : {}
const RUN_UID = isRoot ? NOBODY : (process.getuid?.() ?? -1)
const HOW = isRoot ? 'as uid 65534 on a root-owned read-only tree' : `not root: as the current uid ${RUN_UID} on a tree made read-only by mode (no uid switch)`

/** chmod a tree read-only (dirs 0555, files 0444; executables keep x). */
function readOnlyTree(dir: string): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isSymbolicLink()) continue
    if (e.isDirectory()) readOnlyTree(p)
    else chmodSync(p, statSync(p).mode & 0o111 ? 0o555 : 0o444)
  }
  chmodSync(dir, 0o555)
}

/** Undo readOnlyTree's directory modes so a non-root owner can delete the tree. */
function writableTree(dir: string): void {
  chmodSync(dir, 0o755)
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) writableTree(path.join(dir, e.name))
}

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 2000 }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
  })
}

describe('the image layout: npm run build output on production dependencies only, read-only, non-root', () => {
  let work: string
  let app: string
  let externals: string[]
  let devLeftOut: string[]
  let upstream: http.Server | undefined
  /** The daemon under test; `after` kills it if a test timed out before its own `finally` ran. */
  let running: ChildProcess | undefined
  const seen: http.IncomingHttpHeaders[] = []

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'latchkey-image-'))
    chmodSync(work, 0o755)
    app = path.join(work, 'app')
    mkdirSync(app)
    externals = (await buildDist(path.join(app, 'dist'))).externals
    copyFileSync(path.join(ROOT, 'package.json'), path.join(app, 'package.json'))
    devLeftOut = copyProductionNodeModules(ROOT, app).dev
    readOnlyTree(app)

    const server = http.createServer((req, res) => {
      seen.push(req.headers)
      res.writeHead(200, { 'content-type': 'text/plain' }).end('upstream ok')
    })
    upstream = server
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  })
  after(async () => {
    if (running?.exitCode === null) running.kill('SIGKILL')
    if (upstream) {
      upstream.closeAllConnections()
      await new Promise((r) => upstream?.close(r))
    }
    if (work) {
      if (!isRoot) writableTree(work)
      rmSync(work, { recursive: true, force: true })
    }
  })

  it('lays out node_modules from package-lock.json without the dev packages', (t) => {
    t.diagnostic(HOW)
    assert.ok(devLeftOut.includes('node_modules/typescript') && devLeftOut.includes('node_modules/esbuild'), 'the lock marks the build tools dev-only')
    for (const key of devLeftOut) assert.equal(existsSync(path.join(app, key)), false, `${key} is dev-only and must not be in the image`)
    for (const name of Object.keys((JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies)) {
      assert.ok(existsSync(path.join(app, 'node_modules', name, 'package.json')), `${name} is a production dependency`)
    }
  })

  it('runs `latchkey version` from the read-only copy as a non-root uid', (t) => {
    t.diagnostic(HOW)
    const r = spawnSync(process.execPath, ['dist/cli/latchkey.js', 'version'], { cwd: app, ...AS, env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent' }, encoding: 'utf8', timeout: 20_000 })
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stdout, /^latchkey \d+\.\d+\.\d+/)
  })

  it('loads every package the build output imports, lazily loaded SDKs included, from production node_modules alone', (t) => {
    t.diagnostic(`${externals.length} packages: ${externals.join(' ')}`)
    assert.ok(externals.includes('@aws-sdk/client-secrets-manager') && externals.includes('@peculiar/x509'), 'the lazy imports are in the list')
    // reflect-metadata first, as the interception code imports it before @peculiar/x509.
    const order = [...externals].sort((a, b) => Number(b === 'reflect-metadata') - Number(a === 'reflect-metadata'))
    const code = 'for (const s of JSON.parse(process.argv.at(-1))) { try { await import(s) } catch (e) { console.error(s + ": " + e.message); process.exitCode = 1 } }'
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code, '--', JSON.stringify(order)], { cwd: app, ...AS, env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent', NODE_ENV: 'production' }, encoding: 'utf8', timeout: 60_000 })
    assert.equal(r.status, 0, `imports that fail with production dependencies only:\n${r.stderr}`)
  })

  it('starts as a non-root uid on a read-only app and config, becomes ready, injects, writes only to the mounted dirs, and drains on SIGTERM', async (t) => {
    // The pod's volumes: a read-only config dir and Secret dir, two writable emptyDirs.
    const config = path.join(work, 'etc-latchkey')
    const secrets = path.join(work, 'secrets')
    const state = path.join(work, 'state')
    const shared = path.join(work, 'shared')
    for (const d of [config, secrets, state, shared]) mkdirSync(d)
    t.diagnostic(HOW)
    if (isRoot) for (const d of [state, shared]) chownSync(d, NOBODY, NOBODY)
    writeFileSync(path.join(secrets, 'api-key'), CANARY_FILE, { mode: 0o400 })
    if (isRoot) chownSync(path.join(secrets, 'api-key'), NOBODY, NOBODY)
    const port = (upstream?.address() as AddressInfo).port
    writeFileSync(
      path.join(config, 'latchkey.yaml'),
      [
        'listen: 127.0.0.1:0',
        'admin: { listen: 127.0.0.1:0 }',
        'log: { level: info }',
        'providers:',
        '  dev: { type: env }',
        `  mounted: { type: file, dir: ${secrets} }`,
        'credentials:',
        `  envcred: { provider: dev, ref: PIPELINE_TOKEN, hosts: ["127.0.0.1:${port}"], inject: { type: bearer }, insecure: true }`,
        `  filecred: { provider: mounted, ref: api-key, hosts: ["localhost:${port}"], inject: { type: header, header: X-Api-Key }, insecure: true }`,
        'routes:',
        `  up: { upstream: "http://127.0.0.1:${port}" }`,
        'intercept:',
        '  enabled: true',
        `  caDir: ${state}/ca`,
        `  publicCaFile: ${shared}/ca.pem`,
      ].join('\n') + '\n',
    )
    readOnlyTree(config)
    readOnlyTree(secrets)
    chmodSync(secrets, 0o555)

    const started = performance.now()
    const child: ChildProcess = spawn(process.execPath, ['--enable-source-maps', 'dist/cli/latchkey.js', 'run', '-c', path.join(config, 'latchkey.yaml')], {
      cwd: app,
      ...AS,
      env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent', NODE_ENV: 'production', NODE_OPTIONS, PIPELINE_TOKEN: CANARY_ENV, NO_PROXY: '127.0.0.1,localhost' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    running = child
    let out = ''
    let err = ''
    child.stdout?.on('data', (c: Buffer) => (out += c.toString()))
    child.stderr?.on('data', (c: Buffer) => (err += c.toString()))
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
    try {
      // The admin URL is in the `listening` line.
      let adminUrl: string | undefined
      let proxyUrl: string | undefined
      let readyAt: number | undefined
      const deadline = Date.now() + 20_000
      while (readyAt === undefined && Date.now() < deadline && child.exitCode === null) {
        if (!adminUrl) {
          const line = out
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l) as { event?: string; admin?: string; proxy?: string })
            .find((l) => l.event === 'listening')
          adminUrl = line?.admin
          proxyUrl = line?.proxy
        }
        if (adminUrl && (await get(`${adminUrl}/readyz`).catch(() => ({ status: 0 }))).status === 200) readyAt = performance.now()
        else await new Promise((r) => setTimeout(r, 10))
      }
      assert.ok(readyAt !== undefined && proxyUrl, `ready within 20 s (exit ${child.exitCode}): ${err}\n${out.slice(0, 2000)}`)
      const rssKiB = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1])
      t.diagnostic(`start-to-ready ${(readyAt - started).toFixed(0)} ms, RSS at ready ${(rssKiB / 1024).toFixed(1)} MiB`)

      // The route injects the env secret; the Secret-file credential goes through the forward proxy.
      const routed = await get(`${proxyUrl}/up/hello`)
      assert.equal(routed.status, 200)
      assert.equal(seen.at(-1)?.authorization, `Bearer ${CANARY_ENV}`)
      const forwarded = await new Promise<number>((resolve, reject) => {
        const p = new URL(proxyUrl as string)
        http
          .get({ host: p.hostname, port: p.port, path: `http://localhost:${port}/x`, headers: { host: `localhost:${port}` }, agent: false, timeout: 2000 }, (res) => {
            res.resume()
            resolve(res.statusCode ?? 0)
          })
          .on('timeout', function (this: http.ClientRequest) {
            this.destroy(new Error('timeout'))
          })
          .on('error', reject)
      })
      assert.equal(forwarded, 200)
      assert.equal(seen.at(-1)?.['x-api-key'], CANARY_FILE)
      const rssAfter = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1])
      t.diagnostic(`RSS after two proxied requests ${(rssAfter / 1024).toFixed(1)} MiB`)

      // Sustained load (bounded: 400 rounds of 32 concurrent routed requests). Without the heap
      // cap V8 collects so lazily that RSS reached about 250 MiB here, at the pod's limit.
      const agent = new http.Agent({ keepAlive: true, maxSockets: 32 })
      const one = () =>
        new Promise<void>((resolve, reject) => {
          http
            .get(`${proxyUrl}/up/load`, { agent, timeout: 5000 }, (res) => res.resume().on('end', resolve))
            .on('timeout', function (this: http.ClientRequest) {
              this.destroy(new Error('timeout'))
            })
            .on('error', reject)
        })
      let peak = 0
      const loadDeadline = Date.now() + 60_000
      try {
        for (let round = 0; round < 400; round++) {
          assert.ok(Date.now() < loadDeadline, `the load finishes within 60 s (stopped at round ${round})`)
          await Promise.all(Array.from({ length: 32 }, one))
          peak = Math.max(peak, Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]) / 1024)
        }
      } finally {
        agent.destroy()
      }
      t.diagnostic(`RSS peak over 12800 routed requests ${peak.toFixed(1)} MiB (limit ${LIMIT_MIB} MiB, ${NODE_OPTIONS})`)
      assert.ok(peak < (LIMIT_MIB * 7) / 8, `RSS ${peak.toFixed(1)} MiB stays well under the ${LIMIT_MIB} MiB limit`)
      seen.length = 0

      // Interception wrote its CA to the writable dirs only, the key private to the latchkey uid.
      assert.ok(existsSync(path.join(shared, 'ca.pem')) && existsSync(path.join(shared, 'ca-bundle.pem')), 'public CA and bundle in the shared dir')
      const key = statSync(path.join(state, 'ca', 'ca-key.pem'))
      assert.equal(key.mode & 0o777, 0o600)
      assert.equal(key.uid, RUN_UID)

      child.kill('SIGTERM')
      const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 10_000).unref())])
      assert.equal(code, 0, `clean exit after SIGTERM: ${err}`)
      for (const text of [out, err]) {
        for (const canary of [CANARY_ENV, CANARY_FILE]) {
          for (const form of [canary, Buffer.from(canary).toString('base64'), encodeURIComponent(canary)]) assert.ok(!text.includes(form), 'no secret in the output')
        }
      }
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
    }
  })
})
