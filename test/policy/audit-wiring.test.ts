/**
 * Where audit records go outside the daemon's default: the in-process shim writes them only to
 * a file, and a daemon whose audit file cannot be opened does not start.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { after, before, test } from 'node:test'
import { Agent, request } from 'undici'
import { ConfigError } from '../../src/errors.ts'
import { createLatchkeyInterceptor } from '../../src/shim/interceptor.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { captureLogs } from '../helpers/log-capture.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const VALUE = 'canary-audit-wiring-6e2f0a91'
let dir: string
let up: Upstream

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-audit-wiring-'))
  up = await startUpstream()
})

after(async () => {
  await up?.close()
  await rm(dir, { recursive: true, force: true })
})

function config(audit: Record<string, unknown>) {
  return {
    audit,
    providers: { dev: { type: 'env' } },
    credentials: { api: { provider: 'dev', ref: 'API', hosts: [`localhost:${up.port}`], insecure: true, inject: { type: 'bearer' }, allow: [{ methods: ['GET'], paths: ['/ok'] }] } },
  }
}

test('the shim writes one audit record per request to audit.file, and none to its log stream', async () => {
  const file = path.join(dir, 'shim-audit.log')
  const logs = captureLogs()
  const shim = createLatchkeyInterceptor(config({ sink: 'file', file }), { env: { API: VALUE }, logStream: logs.stream, logLevel: 'trace' })
  const agent = new Agent().compose(shim)
  try {
    await shim.ready
    const ok = await request(`http://localhost:${up.port}/ok?token=q`, { dispatcher: agent })
    await ok.body.text()
    assert.equal(ok.statusCode, 200)
    await assert.rejects(request(`http://localhost:${up.port}/admin`, { dispatcher: agent, method: 'DELETE' }), { code: 'policy_denied' })
  } finally {
    await agent.close()
    await shim.close()
  }
  const records = (await readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
  assert.deepEqual(
    records.map((r) => [r.credential, r.method, r.path, r.outcome, r.code, r.rule]),
    [
      ['api', 'GET', '/ok', 'injected', undefined, 0],
      ['api', 'DELETE', '/admin', 'refused', 'policy_denied', undefined],
    ],
  )
  assert.doesNotMatch(logs.text(), /"audit":true/)
})

test('the shim writes no audit record with the default stdout sink', async () => {
  const logs = captureLogs()
  const shim = createLatchkeyInterceptor(config({}), { env: { API: VALUE }, logStream: logs.stream, logLevel: 'trace' })
  const agent = new Agent().compose(shim)
  try {
    await shim.ready
    const ok = await request(`http://localhost:${up.port}/ok`, { dispatcher: agent })
    await ok.body.text()
  } finally {
    await agent.close()
    await shim.close()
  }
  assert.doesNotMatch(logs.text(), /"audit":true/)
})

test('a daemon whose audit.file cannot be created does not start, and says which key', async () => {
  const blocker = path.join(dir, 'not-a-dir')
  await writeFile(blocker, 'a file where a directory would be')
  const err = await startTestDaemon({ env: { API: VALUE }, logStream: new Writable({ write: (_c, _e, cb) => cb() }), config: config({ sink: 'file', file: path.join(blocker, 'audit.log') }) }).then(
    () => assert.fail('the daemon started'),
    (e: unknown) => e,
  )
  assert.ok(err instanceof ConfigError)
  assert.deepEqual(err.issues.map((i) => i.path), ['audit.file'])
  assert.match(err.message, /cannot open the audit file/)
})
