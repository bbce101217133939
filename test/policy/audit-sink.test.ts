import assert from 'node:assert/strict'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import { test } from 'node:test'
import { createAuditSink, wellFormedTraceparent, type AuditRecord } from '../../src/observe/audit.ts'
import { Scrubber } from '../../src/redact/scrubber.ts'

const CANARY = 'canary-audit-7f3a9c1e5b'

function record(over: Partial<AuditRecord> = {}): AuditRecord {
  return {
    credential: 'api', provider: 'dev', version: '3', fingerprint: 'sha256:0123abcd', host: 'api.lk.test', port: 443,
    method: 'GET', path: '/v1/items', rule: 0, status: 200, outcome: 'injected', code: undefined,
    durationMs: 3.2, bytesIn: 0, bytesOut: 120, traceparent: undefined, ...over,
  }
}

/** The stdout sink writes a turn's records together, on the next turn. */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve))

function lines(s: PassThrough): Record<string, unknown>[] {
  const text = (s.read() as Buffer | null)?.toString() ?? ''
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
}

test('a stdout record is one JSON line marked audit, in a fixed key order', async () => {
  const stdout = new PassThrough()
  const sink = await createAuditSink({ sink: 'stdout', sampling: 1 }, { scrub: (t) => t, stdout, onError: assert.fail })
  sink.write(record({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }))
  await nextTurn()
  const [line] = lines(stdout)
  assert.deepEqual(Object.keys(line!), ['audit', 'time', 'credential', 'provider', 'version', 'fingerprint', 'host', 'port', 'method', 'path', 'rule', 'status', 'outcome', 'durationMs', 'bytesIn', 'bytesOut', 'traceparent'])
  assert.equal(line!.audit, true)
  assert.equal(line!.traceparent, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')
})

test('a secret held by the scrubber never reaches the audit sink, raw or encoded', async () => {
  const scrubber = new Scrubber()
  scrubber.set('k', [CANARY])
  const stdout = new PassThrough()
  const sink = await createAuditSink({ sink: 'stdout', sampling: 1 }, { scrub: (t) => scrubber.scrub(t), stdout, onError: assert.fail })
  for (const form of [CANARY, Buffer.from(CANARY).toString('base64'), encodeURIComponent(CANARY)]) {
    sink.write(record({ path: `/x/${form}`, credential: form }))
  }
  await nextTurn()
  const text = JSON.stringify(lines(stdout))
  assert.ok(!text.includes(CANARY))
  assert.ok(!text.includes(Buffer.from(CANARY).toString('base64')))
})

test('only a well-formed traceparent is kept; anything else a client sends is dropped', () => {
  assert.equal(wellFormedTraceparent('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'), '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')
  assert.equal(wellFormedTraceparent(`00-${CANARY}`), undefined)
  assert.equal(wellFormedTraceparent(['a', 'b']), undefined)
  assert.equal(wellFormedTraceparent(undefined), undefined)
})

test('sampling thins injected records only; refusals, errors and replays are always written', async () => {
  const stdout = new PassThrough()
  const sink = await createAuditSink({ sink: 'stdout', sampling: 0.5 }, { scrub: (t) => t, stdout, onError: assert.fail, random: () => 0.75 })
  for (const outcome of ['injected', 'replayed', 'refused', 'error'] as const) sink.write(record({ outcome }))
  await nextTurn()
  assert.deepEqual(lines(stdout).map((l) => l.outcome), ['replayed', 'refused', 'error'])
})

test('the file sink rotates by size, keeps at most the configured files, each mode 0600', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'lk-audit-'))
  try {
    const file = path.join(dir, 'audit', 'audit.log')
    const sink = await createAuditSink({ sink: 'file', file, maxSize: 1024, keep: 2, sampling: 1 }, { scrub: (t) => t, stdout: new PassThrough(), onError: assert.fail })
    for (let i = 0; i < 100; i++) sink.write(record({ path: `/item/${i}` }))
    await sink.close()
    const names = (await readdir(path.dirname(file))).sort()
    assert.deepEqual(names, ['audit.log', 'audit.log.1', 'audit.log.2'])
    for (const n of names) assert.equal((await stat(path.join(path.dirname(file), n))).mode & 0o777, 0o600, n)
    // Whole lines only, newest last (the current file may be empty just after a rotation).
    let all = ''
    for (const n of ['audit.log.2', 'audit.log.1', 'audit.log']) all += await readFile(path.join(path.dirname(file), n), 'utf8')
    const kept = all.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { path: string })
    assert.equal(kept.at(-1)!.path, '/item/99')
    assert.ok(kept.length < 100, 'older records were rotated away')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('an audit file left world-readable by an earlier run is narrowed to 0600', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'lk-audit-'))
  try {
    const file = path.join(dir, 'audit.log')
    await writeFile(file, '', { mode: 0o644 })
    const sink = await createAuditSink({ sink: 'file', file, sampling: 1 }, { scrub: (t) => t, stdout: new PassThrough(), onError: assert.fail })
    await sink.close()
    assert.equal((await stat(file)).mode & 0o777, 0o600)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('on stdout, the records of one turn of the event loop go out in one write, none lost on close', async () => {
  const writes: string[] = []
  const stdout = new PassThrough()
  stdout.on('data', (c: Buffer) => writes.push(c.toString()))
  const sink = await createAuditSink({ sink: 'stdout', sampling: 1 }, { scrub: (t) => t, stdout, onError: assert.fail })
  for (let i = 0; i < 3; i++) sink.write(record({ path: `/turn/${i}` }))
  await nextTurn()
  assert.equal(writes.length, 1)
  assert.equal(writes[0]!.trim().split('\n').length, 3)
  sink.write(record({ path: '/closing' }))
  await sink.close()
  await nextTurn()
  assert.match(writes.join(''), /"path":"\/closing"/)
})
