/**
 * The proxy listener on a Unix socket: file mode, curl --unix-socket for a route, Node's
 * http.request({ socketPath }) for the forward proxy, Python requests with the adapter
 * docs/policy.md prints, and the stale-socket rule.
 */
import assert from 'node:assert/strict'
import { execFile, spawnSync } from 'node:child_process'
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import { renameSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { promisify } from 'node:util'
import { validateConfig } from '../../src/config/load.ts'
import type { Daemon } from '../../src/daemon.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const run = promisify(execFile)
const VALUE = 'unix-socket-value-4b1d9e3c'

let dir: string
let up: Upstream

function configFor(listen: string, extra: Record<string, unknown> = {}) {
  return {
    listen,
    ...extra,
    providers: { dev: { type: 'env' } },
    credentials: { api: { provider: 'dev', ref: 'API', hosts: [`localhost:${up.port}`], insecure: true, inject: { type: 'bearer' } } },
    routes: { api: { upstream: `http://localhost:${up.port}` } },
  }
}

function start(listen: string, extra?: Record<string, unknown>): Promise<Daemon> {
  return startTestDaemon({ env: { API: VALUE }, baseDir: dir, config: configFor(listen, extra) })
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'lk-sock-'))
  up = await startUpstream()
})

after(async () => {
  await up?.close()
  await rm(dir, { recursive: true, force: true })
})

test('a Unix socket listener is mode 0600, serves curl --unix-socket (route) and Node http.request (forward), and is removed on close', async () => {
  const sock = path.join(dir, 'proxy.sock')
  const daemon = await start(`unix:${sock}`)
  try {
    assert.equal(daemon.proxyUrl, `unix:${sock}`)
    const st = await stat(sock)
    assert.ok(st.isSocket())
    assert.equal(st.mode & 0o777, 0o600)
    const before = up.received.length
    const curl = await run('curl', ['-sS', '--noproxy', '', '--unix-socket', sock, 'http://localhost/api/via-curl?x=1'], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } })
    assert.equal((JSON.parse(curl.stdout) as { url: string }).url, '/via-curl?x=1')
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ socketPath: sock, method: 'GET', path: `http://localhost:${up.port}/via-node`, headers: { host: `localhost:${up.port}` } }, (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode ?? 0))
      })
      req.on('error', reject)
      req.end()
    })
    assert.equal(status, 200)
    assert.deepEqual(
      up.received.slice(before).map((r) => [r.url, r.headers.authorization]),
      [
        ['/via-curl?x=1', `Bearer ${VALUE}`],
        ['/via-node', `Bearer ${VALUE}`],
      ],
    )
  } finally {
    await daemon.close(1000)
  }
  await assert.rejects(stat(sock), { code: 'ENOENT' })
})

test('socket.mode and a relative path are honoured', async () => {
  const daemon = await start('unix:group.sock', { socket: { mode: '0660' } })
  try {
    assert.equal((await stat(path.join(dir, 'group.sock'))).mode & 0o777, 0o660)
  } finally {
    await daemon.close(1000)
  }
})

const isRoot = process.getuid?.() === 0

test('socket.owner and socket.group are set on the socket (as root: the privilege chown needs)', isRoot ? {} : { skip: 'chown to another user needs root' }, async () => {
  const daemon = await start('unix:owned.sock', { socket: { mode: '0660', owner: 65534, group: 65534 } })
  try {
    const st = await stat(path.join(dir, 'owned.sock'))
    assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [65534, 65534, 0o660])
  } finally {
    await daemon.close(1000)
  }
})

const CHOWN_FIXTURE = path.join(import.meta.dirname, '..', 'fixtures', 'socket-chown-refused.ts')
/** As root the refusal is shown by nobody (uid 65534), who must be able to read the clone. */
const nobodyCannotRead =
  isRoot && spawnSync(process.execPath, ['-e', `require('fs').accessSync(${JSON.stringify(CHOWN_FIXTURE)}); require('fs').accessSync(${JSON.stringify(path.join(import.meta.dirname, '..', '..', 'node_modules', 'pino', 'package.json'))})`], { uid: 65534, gid: 65534 }).status !== 0

test('a socket.group the process may not give the socket stops the start naming it, and leaves no socket behind', nobodyCannotRead ? { skip: 'running as root, and uid 65534 cannot read this clone to run the refusal unprivileged' } : {}, async () => {
  // Root may chown to any group: as root, the daemon runs as nobody in a child process.
  const place = await mkdtemp(path.join(tmpdir(), 'lk-sock-denied-'))
  try {
    if (isRoot) await chmod(place, 0o777)
    const sock = path.join(place, 'denied.sock')
    const r = await run(process.execPath, ['--conditions=development', CHOWN_FIXTURE, sock], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      ...(isRoot ? { uid: 65534, gid: 65534 } : {}),
    })
    const out = JSON.parse(r.stdout) as { message?: string }
    assert.match(out.message ?? '', /^Error: cannot give \S+denied\.sock socket\.group 0 \(EPERM\)/)
    await assert.rejects(stat(sock), { code: 'ENOENT' })
  } finally {
    await rm(place, { recursive: true, force: true })
  }
})

test('a stale socket file is replaced; a live socket or any other file at the path fails the start and is left alone', async () => {
  // Stale: a socket file nothing listens on (the server moved it away before it closed).
  const stale = path.join(dir, 'stale.sock')
  const old = net.createServer()
  await new Promise<void>((r) => old.listen(path.join(dir, 'old.sock'), r))
  renameSync(path.join(dir, 'old.sock'), stale)
  await new Promise<void>((r) => old.close(() => r()))
  assert.ok((await stat(stale)).isSocket())
  const d = await start(`unix:${stale}`)
  await d.close(1000)

  const live = path.join(dir, 'live.sock')
  const other = net.createServer((c) => c.destroy())
  await new Promise<void>((r) => other.listen(live, r))
  try {
    await assert.rejects(start(`unix:${live}`), /another process is listening/)
    assert.ok((await stat(live)).isSocket())
  } finally {
    await new Promise<void>((r) => other.close(() => r()))
  }

  const regular = path.join(dir, 'regular.sock')
  await writeFile(regular, 'keep me')
  await assert.rejects(start(`unix:${regular}`), /not a socket/)
  assert.equal(await readFile(regular, 'utf8'), 'keep me')
})

test('check: a Unix socket counts as local, its mode must be an octal string, admin.listen stays TCP', () => {
  const base = { providers: { dev: { type: 'env' } } }
  assert.ok(validateConfig({ ...base, listen: 'unix:/run/latchkey/proxy.sock' }, { env: {}, baseDir: '/' }).ok)
  const badMode = validateConfig({ ...base, listen: 'unix:/run/p.sock', socket: { mode: 600 } }, { env: {}, baseDir: '/' })
  assert.ok(!badMode.ok && badMode.issues.some((i) => i.path === 'socket.mode'))
  const adminSock = validateConfig({ ...base, admin: { listen: 'unix:/run/a.sock' } }, { env: {}, baseDir: '/' })
  assert.ok(!adminSock.ok && adminSock.issues.some((i) => i.path === 'admin.listen'))
  const long = validateConfig({ ...base, listen: `unix:/${'x'.repeat(120)}.sock` }, { env: {}, baseDir: '/' })
  assert.ok(!long.ok && long.issues.some((i) => i.path === 'listen' && /107 bytes/.test(i.message)))
})

/** Each python3 (PATH, Debian's) that can import requests, by its requests version. */
function pythonsWithRequests(): Array<{ python: string; version: string }> {
  const found: Array<{ python: string; version: string }> = []
  for (const python of ['python3', '/usr/bin/python3']) {
    const r = spawnSync(python, ['-c', 'import requests; print(requests.__version__)'], { encoding: 'utf8', timeout: 20_000 })
    const version = r.stdout?.trim()
    if (!r.error && r.status === 0 && version && !found.some((f) => f.version === version)) found.push({ python, version })
  }
  return found
}
const withRequests = pythonsWithRequests()

test("Python requests through the socket with docs/policy.md's adapter, as printed there", withRequests.length === 0 ? { skip: 'requests is not importable by python3 or /usr/bin/python3 (Debian: apt-get install -y python3-requests)' } : {}, async (t) => {
  const page = await readFile(path.join(import.meta.dirname, '..', '..', 'docs', 'policy.md'), 'utf8')
  const block = /```python\n([\s\S]*?)\n```/.exec(page.slice(page.indexOf('### A Unix-socket listener')))?.[1]
  assert.ok(block, 'the page has the adapter')
  // The adapter and usage as printed, with the socket path and destination of this test.
  const sock = path.join(dir, 'py.sock')
  const script = block
    .replace('/run/user/1000/latchkey/proxy.sock', sock)
    .replace(/session\.get\("[^"]*"\)/, `r = session.get("http://localhost:${up.port}/via-python?x=1")\nprint(r.status_code)`)
  assert.notEqual(script, block)
  const daemon = await start(`unix:${sock}`)
  try {
    for (const { python, version } of withRequests) {
      await t.test(`requests ${version} (${python})`, async () => {
        const before = up.received.length
        const r = await run(python, ['-c', script], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } })
        assert.equal(r.stdout.trim(), '200', r.stderr)
        assert.deepEqual(
          up.received.slice(before).map((x) => [x.url, x.headers.authorization]),
          [['/via-python?x=1', `Bearer ${VALUE}`]],
        )
      })
    }
  } finally {
    await daemon.close(1000)
  }
})

test('CONNECT over the socket: a bound host without interception is refused with its code; under egress: passthrough an unbound one is tunnelled', async () => {
  const sock = path.join(dir, 'connect.sock')
  const daemon = await start(`unix:${sock}`, { egress: 'passthrough' })
  /** A raw exchange on a fresh socket connection: everything received until `done` says so, or the peer closes. */
  const exchange = (payload: string, done: (text: string) => boolean) =>
    new Promise<string>((resolve, reject) => {
      const c = net.connect(sock)
      let text = ''
      c.setEncoding('latin1')
      c.on('data', (d: string) => {
        text += d
        if (done(text)) {
          c.destroy()
          resolve(text)
        }
      })
      c.on('close', () => resolve(text))
      c.on('error', reject)
      c.write(payload)
    })
  try {
    const refused = await exchange(`CONNECT localhost:${up.port} HTTP/1.1\r\nHost: localhost:${up.port}\r\n\r\n`, (t) => t.includes('\r\n\r\n'))
    assert.match(refused, /^HTTP\/1\.1 403 intercept_disabled/)
    const before = up.received.length
    // 127.0.0.1 is not bound (the credential names localhost): a blind tunnel, then a request inside it.
    const inside = `GET /through-tunnel HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\nConnection: close\r\n\r\n`
    const tunnelled = await exchange(`CONNECT 127.0.0.1:${up.port} HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\n\r\n${inside}`, (t) => /\r\n\r\n[\s\S]*HTTP\/1\.1 200[\s\S]*\r\n\r\n/.test(t) && t.includes('through-tunnel'))
    assert.match(tunnelled, /^HTTP\/1\.1 200/)
    assert.deepEqual(
      up.received.slice(before).map((r) => [r.url, r.headers.authorization]),
      [['/through-tunnel', undefined]],
      'nothing is injected into a blind tunnel',
    )
  } finally {
    await daemon.close(1000)
  }
})
