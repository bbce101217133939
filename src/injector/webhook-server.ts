/**
 * The injector's HTTPS server: `POST /mutate` (AdmissionReview v1), `GET /healthz` and
 * `GET /metrics` (Prometheus text: admissions by outcome, admission latency, process metrics).
 *
 * HTTPS only: the API server refuses plain-HTTP webhooks. The certificate and key are re-read
 * on an interval and swapped in with `setSecureContext` when they change, because cert-manager
 * renews them in place (a Secret volume updated through a symlink swap, which file watchers
 * miss); a half-written or mismatched pair is ignored until the next good one.
 */
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import https from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createSecureContext } from 'node:tls'
import type { Logger } from 'pino'
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { ADMISSION_OUTCOMES, BadAdmissionReview, reviewAdmission } from './admission-review.ts'
import type { SidecarOptions } from './sidecar.ts'

export interface WebhookServerOptions {
  host: string
  port: number
  certFile: string
  keyFile: string
  sidecar: SidecarOptions
  logger: Logger
  /** Largest accepted request body. Default 3 MiB (a Pod object can be about 1.5 MiB in etcd). */
  bodyLimit?: number
  /** How often the certificate files are checked for a change. Default 10 s. */
  certCheckIntervalMs?: number
  /** Node process metrics (CPU, memory, event loop) on /metrics. Default true; tests turn them off. */
  processMetrics?: boolean
}

/**
 * What `/metrics` reports, on a registry of its own. Outcomes are the admission outcomes plus
 * `invalid` (a body that is not an AdmissionReview: HTTP 400, the API server applies the
 * failurePolicy) and `error` (HTTP 500). Labels are fixed words: never pod or namespace names.
 */
export class InjectorMetrics {
  readonly registry = new Registry()
  readonly admissions = new Counter({ name: 'latchkey_injector_admissions_total', help: 'AdmissionReview requests answered, by outcome', labelNames: ['outcome'] as const, registers: [this.registry] })
  readonly duration = new Histogram({
    name: 'latchkey_injector_admission_duration_seconds',
    help: 'Time from request received to response sent for POST /mutate, by outcome',
    labelNames: ['outcome'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  })

  constructor(processMetrics = true) {
    // Every outcome from zero, so a rate() over `denied` exists before the first denial.
    for (const outcome of [...ADMISSION_OUTCOMES, 'invalid', 'error']) this.admissions.inc({ outcome }, 0)
    if (processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'latchkey_injector_', eventLoopMonitoringPrecision: 2000 })
  }

  observe(outcome: string, started: bigint): void {
    this.admissions.inc({ outcome })
    this.duration.observe({ outcome }, Number(process.hrtime.bigint() - started) / 1e9)
  }
}

export interface WebhookServer {
  readonly url: string
  readonly port: number
  /** Re-read the certificate now; resolves true when a new pair was installed. */
  reloadCertificate(): Promise<boolean>
  close(): Promise<void>
}

const DEFAULT_BODY_LIMIT = 3 * 1024 * 1024

export async function startWebhookServer(o: WebhookServerOptions): Promise<WebhookServer> {
  const bodyLimit = o.bodyLimit ?? DEFAULT_BODY_LIMIT
  const metrics = new InjectorMetrics(o.processMetrics !== false)
  const first = await readPair(o.certFile, o.keyFile)
  // Fails here (and the command exits) when the first pair is unusable.
  createSecureContext({ cert: first.cert, key: first.key })
  let fingerprint = first.fingerprint

  const server = https.createServer({ cert: first.cert, key: first.key, minVersion: 'TLSv1.2' }, (req, res) => {
    const started = process.hrtime.bigint()
    handle(req, res, o, bodyLimit, metrics, started).catch((err: unknown) => {
      o.logger.error({ event: 'webhook_error', err }, 'webhook request failed')
      metrics.observe('error', started)
      if (!res.headersSent) sendJson(res, 500, { error: 'internal', message: 'internal error' })
      else res.destroy()
    })
  })
  server.requestTimeout = 10_000
  server.headersTimeout = 5_000
  server.keepAliveTimeout = 30_000

  const reloadCertificate = async (): Promise<boolean> => {
    let pair
    try {
      pair = await readPair(o.certFile, o.keyFile)
    } catch (err) {
      o.logger.warn({ event: 'webhook_cert_unreadable', err }, 'cannot read the webhook certificate; keeping the current one')
      return false
    }
    if (pair.fingerprint === fingerprint) return false
    try {
      server.setSecureContext({ cert: pair.cert, key: pair.key, minVersion: 'TLSv1.2' })
    } catch (err) {
      // Mid-renewal the key and certificate can briefly disagree; the next check picks up the pair.
      o.logger.warn({ event: 'webhook_cert_invalid', err }, 'webhook certificate and key do not form a pair yet; keeping the current one')
      return false
    }
    fingerprint = pair.fingerprint
    o.logger.info({ event: 'webhook_cert_reloaded' }, 'webhook certificate reloaded')
    return true
  }
  const timer = setInterval(() => void reloadCertificate(), o.certCheckIntervalMs ?? 10_000)
  timer.unref()

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(o.port, o.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port
  const host = o.host.includes(':') ? `[${o.host}]` : o.host
  o.logger.info({ event: 'webhook_listening', port }, 'latchkey injector listening')
  return {
    url: `https://${host}:${port}`,
    port,
    reloadCertificate,
    close: () =>
      new Promise<void>((resolve) => {
        clearInterval(timer)
        server.close(() => resolve())
        server.closeIdleConnections()
      }),
  }
}

async function handle(req: IncomingMessage, res: ServerResponse, o: WebhookServerOptions, bodyLimit: number, metrics: InjectorMetrics, started: bigint): Promise<void> {
  const path = (req.url ?? '/').split('?')[0]
  if (path === '/healthz') {
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { error: 'method_not_allowed', message: 'use GET' })
    return sendJson(res, 200, { status: 'ok' })
  }
  if (path === '/metrics') {
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { error: 'method_not_allowed', message: 'use GET' })
    const text = await metrics.registry.metrics()
    res.writeHead(200, { 'content-type': metrics.registry.contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
    res.end(text)
    return
  }
  if (path !== '/mutate') return sendJson(res, 404, { error: 'not_found', message: 'paths: POST /mutate, GET /healthz, GET /metrics' })
  const invalid = (status: number, body: unknown) => {
    metrics.observe('invalid', started)
    sendJson(res, status, body)
  }
  if (req.method !== 'POST') return sendJson(res, 405, { error: 'method_not_allowed', message: 'use POST' })
  const type = req.headers['content-type'] ?? ''
  if (!/^application\/json\b/i.test(type)) return invalid(415, { error: 'unsupported_media_type', message: 'expected application/json' })
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > bodyLimit) {
    metrics.observe('invalid', started)
    return refuseTooLarge(req, res, bodyLimit)
  }

  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > bodyLimit) {
      metrics.observe('invalid', started)
      return refuseTooLarge(req, res, bodyLimit)
    }
    chunks.push(chunk)
  }
  let body: unknown
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    return invalid(400, { error: 'bad_json', message: 'request body is not valid JSON' })
  }
  let result
  try {
    result = reviewAdmission(body, o.sidecar)
  } catch (err) {
    if (err instanceof BadAdmissionReview) return invalid(400, { error: 'bad_admission_review', message: err.message })
    throw err
  }
  const r = result.review.response
  o.logger.info(
    { event: 'admission', uid: r.uid, pod: result.pod, outcome: result.outcome, allowed: r.allowed, ops: result.patch.length, ...(r.status ? { reason: r.status.message } : {}) },
    `pod ${result.pod}: ${result.outcome}`,
  )
  sendJson(res, 200, result.review)
  metrics.observe(result.outcome, started)
}

function refuseTooLarge(req: IncomingMessage, res: ServerResponse, limit: number): void {
  res.setHeader('connection', 'close')
  sendJson(res, 413, { error: 'body_too_large', message: `request body exceeds ${limit} bytes` })
  // Stop reading: the rest of an oversized body is not worth receiving.
  req.resume()
  res.on('finish', () => req.destroy())
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
  res.end(text)
}

async function readPair(certFile: string, keyFile: string): Promise<{ cert: Buffer; key: Buffer; fingerprint: string }> {
  const [cert, key] = await Promise.all([readFile(certFile), readFile(keyFile)])
  return { cert, key, fingerprint: createHash('sha256').update(cert).update('\0').update(key).digest('hex') }
}
