import assert from 'node:assert/strict'
import { chmod, mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import pino from 'pino'
import { ProviderError } from '../../src/errors.ts'
import { fileProvider } from '../../src/providers/file.ts'
import type { SecretProvider } from '../../src/providers/provider.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'
import { startUpstream } from '../helpers/upstream.ts'

const CANARY = 'canary-file-7b2e9d04a1'
const CANARY_OUTSIDE = 'canary-file-outside-c6f31a8e'
const CANARY_V1 = 'canary-file-k8s-v1-5d0e2b'
const CANARY_V2 = 'canary-file-k8s-v2-91a7fc'

let root: string
let dir: string
const logs = captureLogs()
const thrown: ProviderError[] = []

before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'latchkey-file-'))
  dir = path.join(root, 'secrets')
  await mkdir(dir)
  await mkdir(path.join(root, 'outside'))
  await writeFile(path.join(root, 'outside', 'secret'), CANARY_OUTSIDE, { mode: 0o600 })
})
after(async () => {
  await rm(root, { recursive: true, force: true })
})

async function provider(options: Record<string, unknown> = {}): Promise<SecretProvider> {
  const parsed = fileProvider.optionsSchema.parse({ type: 'file', dir, ...options })
  return fileProvider.create(parsed, { name: 'files', logger: pino({ level: 'trace' }, logs.stream), env: {} })
}

async function read(p: SecretProvider, ref: string): Promise<string> {
  return (await p.fetch(ref, { signal: AbortSignal.timeout(5000) })).reveal()
}

/** The ProviderError a fetch fails with (kept, so the messages can be checked for canaries). */
async function failure(p: SecretProvider, ref: string): Promise<ProviderError> {
  try {
    await read(p, ref)
  } catch (err) {
    assert.ok(err instanceof ProviderError, `a ProviderError, got ${String(err)}`)
    thrown.push(err)
    return err
  }
  assert.fail(`fetching ${ref} did not fail`)
}

describe('file provider', () => {
  test('reads a file inside dir and strips one trailing newline (LF or CRLF) by default', async () => {
    await writeFile(path.join(dir, 'token'), `${CANARY}\n`, { mode: 0o600 })
    await writeFile(path.join(dir, 'crlf'), `${CANARY}\r\n`, { mode: 0o600 })
    await writeFile(path.join(dir, 'two'), `${CANARY}\n\n`, { mode: 0o600 })
    const p = await provider()
    assert.equal(await read(p, 'token'), CANARY)
    assert.equal(await read(p, 'crlf'), CANARY)
    assert.equal(await read(p, 'two'), `${CANARY}\n`, 'only one newline is stripped')
  })

  test('trimNewline: false keeps the file exactly as written', async () => {
    const p = await provider({ trimNewline: false })
    assert.equal(await read(p, 'token'), `${CANARY}\n`)
  })

  test('refs with .. segments or absolute paths are refused before any file is touched', async () => {
    const p = await provider()
    for (const ref of ['../outside/secret', 'a/../../outside/secret', '..', path.join(root, 'outside', 'secret'), '/etc/passwd', '..\\outside\\secret', '']) {
      const err = await failure(p, ref)
      assert.equal(err.code, 'provider_config', `ref ${JSON.stringify(ref)}`)
      assert.match(err.message, /must be a relative name inside the provider's dir/)
    }
  })

  test('a symlink that escapes dir is refused; one that stays inside is followed', async () => {
    await symlink(path.join(root, 'outside', 'secret'), path.join(dir, 'escape'))
    await symlink('../outside', path.join(dir, 'escape-dir'))
    await symlink('token', path.join(dir, 'alias'))
    const p = await provider()
    for (const ref of ['escape', 'escape-dir/secret']) {
      const err = await failure(p, ref)
      assert.equal(err.code, 'provider_config')
      assert.match(err.message, /resolves outside/)
    }
    assert.equal(await read(p, 'alias'), CANARY)
  })

  test('a file larger than maxBytes is refused as invalid_secret', async () => {
    await writeFile(path.join(dir, 'big'), 'x'.repeat(65), { mode: 0o600 })
    const small = await provider({ maxBytes: 64 })
    const err = await failure(small, 'big')
    assert.equal(err.code, 'invalid_secret')
    assert.match(err.message, /larger than 64 bytes/)
    assert.equal((await read(await provider({ maxBytes: 65 }), 'big')).length, 65, 'exactly maxBytes is fine')
  })

  test('missing, empty and non-regular files fail with mapped codes', async () => {
    await writeFile(path.join(dir, 'empty'), '\n', { mode: 0o600 })
    await mkdir(path.join(dir, 'subdir'))
    const p = await provider()
    assert.equal((await failure(p, 'nope')).code, 'secret_not_found')
    assert.equal((await failure(p, 'empty')).code, 'invalid_secret')
    assert.equal((await failure(p, 'subdir')).code, 'secret_not_found')
  })

  test('a world-readable secret file is warned about once, by name', async () => {
    await writeFile(path.join(dir, 'open'), CANARY)
    await chmod(path.join(dir, 'open'), 0o644)
    const p = await provider()
    logs.clear()
    await read(p, 'open')
    await read(p, 'open')
    const warned = logs.records().filter((r) => r.event === 'file_world_readable')
    assert.equal(warned.length, 1)
    assert.equal(warned[0]?.file, path.join(dir, 'open'))
  })

  test('a Kubernetes ..data symlink swap is seen by the next fetch', async () => {
    const k8s = path.join(dir, 'k8s')
    await mkdir(path.join(k8s, '..2026_01_01_v1'), { recursive: true })
    await writeFile(path.join(k8s, '..2026_01_01_v1', 'token'), CANARY_V1, { mode: 0o600 })
    await symlink('..2026_01_01_v1', path.join(k8s, '..data'))
    await symlink('..data/token', path.join(k8s, 'token'))
    const p = await provider()
    assert.equal(await read(p, 'k8s/token'), CANARY_V1)
    await swap(k8s, '..2026_01_02_v2', CANARY_V2, '..2026_01_01_v1')
    assert.equal(await read(p, 'k8s/token'), CANARY_V2)
  })

  test('no error message holds a secret value', () => {
    assert.ok(thrown.length >= 10)
    assertNoCanary(
      thrown.map((e) => `${e.message} ${JSON.stringify(e)}`),
      [CANARY, CANARY_OUTSIDE, CANARY_V1, CANARY_V2],
    )
    assertNoCanary(logs.lines(), [CANARY, CANARY_OUTSIDE])
  })
})

/** What the kubelet does on a Secret update: write a new timestamped dir, then rename a new ..data link over the old one. */
async function swap(k8s: string, next: string, value: string, previous: string): Promise<void> {
  await mkdir(path.join(k8s, next))
  await writeFile(path.join(k8s, next, 'token'), value, { mode: 0o600 })
  await symlink(next, path.join(k8s, '..data_tmp'))
  await rename(path.join(k8s, '..data_tmp'), path.join(k8s, '..data'))
  await rm(path.join(k8s, previous), { recursive: true })
}

test('through the daemon, a ..data swap is picked up by a bust after an upstream 401, and after the TTL', async () => {
  const k8s = await mkdtemp(path.join(root, 'mounted-'))
  await mkdir(path.join(k8s, '..v1'))
  await writeFile(path.join(k8s, '..v1', 'token'), CANARY_V1, { mode: 0o600 })
  await symlink('..v1', path.join(k8s, '..data'))
  await symlink('..data/token', path.join(k8s, 'token'))
  const up = await startUpstream()
  const daemonLogs = captureLogs()
  const d = await startTestDaemon({
    logStream: daemonLogs.stream,
    config: {
      cache: { bustCooldown: '10ms' },
      providers: { mounted: { type: 'file', dir: k8s } },
      credentials: { k: { provider: 'mounted', ref: 'token', hosts: [`127.0.0.1:${up.port}`], inject: { type: 'bearer' }, insecure: true, ttl: '300ms' } },
      routes: { up: { upstream: up.url } },
    },
  })
  try {
    let expected = CANARY_V2
    up.requireHeader('authorization', () => `Bearer ${expected}`)
    await swap(k8s, '..v2', CANARY_V2, '..v1')
    // The cached value is v1: the upstream refuses it, latchkey busts, reads v2 and replays.
    const before = up.received.length
    const res = await fetch(`${d.proxyUrl}/up/bust`)
    assert.equal(res.status, 200)
    await res.text()
    assert.deepEqual(up.received.slice(before).map((r) => r.headers.authorization), [`Bearer ${CANARY_V1}`, `Bearer ${CANARY_V2}`])
    // Next rotation with an upstream that accepts anything: the TTL refresh finds v3.
    up.handle((_req, r) => r.end('ok'))
    expected = 'unused'
    await swap(k8s, '..v3', `${CANARY_V2}-3`, '..v2')
    const deadline = Date.now() + 3000
    for (let i = 0; i < 40 && Date.now() < deadline && up.received.at(-1)?.headers.authorization !== `Bearer ${CANARY_V2}-3`; i++) {
      await new Promise((r) => setTimeout(r, 100))
      await (await fetch(`${d.proxyUrl}/up/ttl`)).text()
    }
    assert.equal(up.received.at(-1)?.headers.authorization, `Bearer ${CANARY_V2}-3`)
  } finally {
    await d.close()
    await up.close()
  }
  assertNoCanary(daemonLogs.lines(), [CANARY_V1, CANARY_V2])
})
