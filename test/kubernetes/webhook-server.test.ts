import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { pino } from 'pino'
import { injectorCommand } from '../../src/cli/injector-command.ts'
import { startWebhookServer, type WebhookServer } from '../../src/injector/webhook-server.ts'
import { createTestCa, type TestCa } from '../helpers/test-ca.ts'
import { admissionReview, INJECT, pod, SIDECAR } from './fixtures.ts'

interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

function request(url: string, ca: string, o: { method?: string; path?: string; body?: string | Buffer; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${url}${o.path ?? '/mutate'}`,
      { method: o.method ?? 'POST', ca, headers: { 'content-type': 'application/json', ...o.headers }, servername: 'latchkey-injector.latchkey-system.svc', agent: false, timeout: 5000 },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }))
        res.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(new Error('request timed out')))
    req.on('error', reject)
    req.end(o.body)
  })
}

const NAMES = ['latchkey-injector.latchkey-system.svc', '127.0.0.1']

describe('latchkey injector: HTTPS webhook server', () => {
  let dir: string
  let ca: TestCa
  let server: WebhookServer
  const logs = new PassThrough()
  const lines: string[] = []
  logs.on('data', (c: Buffer) => lines.push(...c.toString('utf8').split('\n').filter(Boolean)))

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'latchkey-injector-'))
    ca = await createTestCa()
    const pair = await ca.issue(NAMES)
    writeFileSync(path.join(dir, 'tls.crt'), pair.cert)
    writeFileSync(path.join(dir, 'tls.key'), pair.key)
    server = await startWebhookServer({
      host: '127.0.0.1',
      port: 0,
      certFile: path.join(dir, 'tls.crt'),
      keyFile: path.join(dir, 'tls.key'),
      sidecar: SIDECAR,
      logger: pino({ level: 'info' }, logs),
      bodyLimit: 64 * 1024,
      certCheckIntervalMs: 60_000,
      processMetrics: false,
    })
  })
  after(async () => {
    await server.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('answers an AdmissionReview on POST /mutate over HTTPS with the uid echoed and a JSON Patch', async () => {
    const r = await request(server.url, ca.caPem, { body: JSON.stringify(admissionReview(pod(INJECT), { uid: 'abc-123' })) })
    assert.equal(r.status, 200)
    assert.match(String(r.headers['content-type']), /^application\/json/)
    const review = JSON.parse(r.body) as { apiVersion: string; kind: string; response: { uid: string; allowed: boolean; patchType: string; patch: string } }
    assert.equal(review.apiVersion, 'admission.k8s.io/v1')
    assert.equal(review.kind, 'AdmissionReview')
    assert.equal(review.response.uid, 'abc-123')
    assert.equal(review.response.allowed, true)
    assert.equal(review.response.patchType, 'JSONPatch')
    assert.ok(Array.isArray(JSON.parse(Buffer.from(review.response.patch, 'base64').toString('utf8'))))
    const line = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.event === 'admission' && l.uid === 'abc-123')
    assert.equal(line?.outcome, 'injected')
    assert.equal(line?.pod, 'pipelines/train-model')
  })

  it('answers a refused pod with HTTP 200 and allowed: false (the API server shows the message)', async () => {
    const r = await request(server.url, ca.caPem, { body: JSON.stringify(admissionReview(pod({ 'latchkey.dev/inject': 'true' }))) })
    assert.equal(r.status, 200)
    const review = JSON.parse(r.body) as { response: { allowed: boolean; status: { message: string } } }
    assert.equal(review.response.allowed, false)
    assert.match(review.response.status.message, /latchkey\.dev\/config is missing/)
  })

  it('serves GET /healthz', async () => {
    const r = await request(server.url, ca.caPem, { method: 'GET', path: '/healthz' })
    assert.equal(r.status, 200)
    assert.deepEqual(JSON.parse(r.body), { status: 'ok' })
  })

  it('serves GET /metrics in Prometheus text: admissions by outcome (every outcome from zero) and their latency, never a pod name', async () => {
    const scrape = async () => {
      const r = await request(server.url, ca.caPem, { method: 'GET', path: '/metrics' })
      assert.equal(r.status, 200)
      assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/)
      const count = (metric: string, outcome: string) => Number(new RegExp(`^${metric}\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(r.body)?.[1] ?? NaN)
      return { body: r.body, count }
    }
    const before = await scrape()
    for (const outcome of ['injected', 'reinvoked', 'skipped', 'denied', 'ignored', 'invalid', 'error']) {
      assert.ok(Number.isInteger(before.count('latchkey_injector_admissions_total', outcome)), `${outcome} is reported before it happens`)
    }
    await request(server.url, ca.caPem, { body: JSON.stringify(admissionReview(pod(INJECT))) })
    await request(server.url, ca.caPem, { body: JSON.stringify(admissionReview(pod({ 'latchkey.dev/inject': 'true' }))) })
    await request(server.url, ca.caPem, { body: JSON.stringify(admissionReview(pod(undefined))) })
    await request(server.url, ca.caPem, { body: '{"apiVersion":' })
    const after = await scrape()
    const delta = (outcome: string) => after.count('latchkey_injector_admissions_total', outcome) - before.count('latchkey_injector_admissions_total', outcome)
    assert.deepEqual([delta('injected'), delta('denied'), delta('skipped'), delta('invalid'), delta('error')], [1, 1, 1, 1, 0])
    assert.equal(after.count('latchkey_injector_admission_duration_seconds_count', 'injected') - before.count('latchkey_injector_admission_duration_seconds_count', 'injected'), 1)
    assert.match(after.body, /^latchkey_injector_admission_duration_seconds_bucket\{le="0\.005",outcome="injected"\} \d+$/m)
    assert.doesNotMatch(after.body, /train-model|pipelines/, 'labels are outcomes only')
  })

  it('answers errors as JSON: unknown path, wrong method, wrong content type, bad JSON, not an AdmissionReview', async () => {
    const cases: [Parameters<typeof request>[2], number, string][] = [
      [{ method: 'GET', path: '/nope' }, 404, 'not_found'],
      [{ method: 'GET' }, 405, 'method_not_allowed'],
      [{ body: '{}', headers: { 'content-type': 'text/plain' } }, 415, 'unsupported_media_type'],
      [{ body: '{"apiVersion":' }, 400, 'bad_json'],
      [{ body: JSON.stringify({ apiVersion: 'v1', kind: 'Pod' }) }, 400, 'bad_admission_review'],
    ]
    for (const [o, status, error] of cases) {
      const r = await request(server.url, ca.caPem, o)
      assert.equal(r.status, status, JSON.stringify(o))
      assert.match(String(r.headers['content-type']), /^application\/json/)
      assert.equal((JSON.parse(r.body) as { error: string }).error, error)
    }
  })

  it('refuses a body over the limit with 413, by Content-Length and while streaming', async () => {
    const big = Buffer.alloc(100 * 1024, 'a')
    const declared = await request(server.url, ca.caPem, { body: big })
    assert.equal(declared.status, 413)
    assert.equal((JSON.parse(declared.body) as { error: string }).error, 'body_too_large')
    const chunked = await request(server.url, ca.caPem, { body: big, headers: { 'transfer-encoding': 'chunked' } })
    assert.equal(chunked.status, 413)
  })

  it('speaks only TLS: a plain HTTP request gets no HTTP answer', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const s = net.connect(server.port, '127.0.0.1', () => s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'))
      let data = ''
      s.setTimeout(5000, () => s.destroy(new Error('timeout')))
      s.on('data', (c: Buffer) => (data += c.toString('latin1')))
      s.on('close', () => resolve(data))
      s.on('error', reject)
    })
    assert.doesNotMatch(answer, /^HTTP\/1\.1 200/)
  })

  it('reloads a renewed certificate and keeps the current one while the files do not form a pair', async () => {
    const ca2 = await createTestCa()
    const pair2 = await ca2.issue(NAMES)
    // Mid-renewal: the new certificate next to the old key.
    writeFileSync(path.join(dir, 'tls.crt'), pair2.cert)
    assert.equal(await server.reloadCertificate(), false)
    assert.equal((await request(server.url, ca.caPem, { method: 'GET', path: '/healthz' })).status, 200, 'still served with the first certificate')
    writeFileSync(path.join(dir, 'tls.key'), pair2.key)
    assert.equal(await server.reloadCertificate(), true)
    assert.equal(await server.reloadCertificate(), false, 'unchanged files are not reinstalled')
    assert.equal((await request(server.url, ca2.caPem, { method: 'GET', path: '/healthz' })).status, 200)
    await assert.rejects(request(server.url, ca.caPem, { method: 'GET', path: '/healthz' }), /certificate/)
    assert.ok(lines.some((l) => (JSON.parse(l) as { event?: string }).event === 'webhook_cert_reloaded'))
  })
})

describe('latchkey injector command', () => {
  it('serves the webhook until the signal aborts, then resolves', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'latchkey-injector-cmd-'))
    try {
      const ca = await createTestCa()
      const pair = await ca.issue(NAMES)
      writeFileSync(path.join(dir, 'tls.crt'), pair.cert)
      writeFileSync(path.join(dir, 'tls.key'), pair.key)
      const stdout = new PassThrough()
      const stderr = new PassThrough()
      let err = ''
      stderr.on('data', (c: Buffer) => (err += c.toString()))
      stdout.resume()
      const controller = new AbortController()
      const cmd = injectorCommand({ env: {}, stdout, stderr, cwd: dir, signal: controller.signal })
      cmd.exitOverride()
      const done = cmd.parseAsync(['--listen', '127.0.0.1:0', '--tls-cert', path.join(dir, 'tls.crt'), '--tls-key', path.join(dir, 'tls.key'), '--sidecar-image', 'registry.example/latchkey:9.9.9', '--cpu-limit', '500m', '--log-level', 'silent'], {
        from: 'user',
      })
      const deadline = Date.now() + 10_000
      while (!/serving https:\/\/127\.0\.0\.1:\d+/.test(err) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
      const url = /serving (https:\/\/127\.0\.0\.1:\d+)/.exec(err)?.[1]
      assert.ok(url, `command announced its URL: ${err}`)
      const r = await request(url, ca.caPem, { body: JSON.stringify(admissionReview(pod(INJECT))) })
      const review = JSON.parse(r.body) as { response: { patch: string } }
      const ops = JSON.parse(Buffer.from(review.response.patch, 'base64').toString('utf8')) as { path: string; value: unknown }[]
      const init = ops.find((o) => o.path === '/spec/initContainers')?.value as { image: string; resources: { limits: Record<string, string> } }[] | undefined
      assert.equal(init?.[0]?.image, 'registry.example/latchkey:9.9.9', 'the --sidecar-image flag reaches the patch')
      assert.deepEqual(init?.[0]?.resources.limits, { memory: '256Mi', cpu: '500m' }, 'and --cpu-limit')
      controller.abort()
      await done
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('refuses to start without a sidecar image', async () => {
    const stderr = new PassThrough()
    let err = ''
    stderr.on('data', (c: Buffer) => (err += c.toString()))
    const cmd = injectorCommand({ env: {}, stdout: new PassThrough(), stderr, cwd: '/', signal: new AbortController().signal })
    cmd.exitOverride().configureOutput({ writeErr: (s) => stderr.write(s) })
    await assert.rejects(cmd.parseAsync(['--listen', '127.0.0.1:0'], { from: 'user' }), (e: { exitCode?: number }) => e.exitCode === 2)
    assert.match(err, /--sidecar-image/)
  })
})
