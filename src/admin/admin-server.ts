import { createHash, timingSafeEqual } from 'node:crypto'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import type { Unready } from '../cache/secret-cache.ts'
import type { ErrorCode } from '../errors.ts'
import { isLoopbackHost } from '../config/listeners.ts'
import { sendError } from '../proxy/respond.ts'
import type { Metrics } from './metrics.ts'

export interface AdminOptions {
  metrics: Metrics
  logger: Logger
  /** Admin bearer token; undefined disables mutating calls. */
  token: string | undefined
  /** Prefetched credentials that cannot be served now, with their error codes (never values). */
  unready(): Unready[]
  /** Clear all cached secrets, or one credential's; undefined when the name is unknown. */
  clear(credential?: string): number | undefined
  /**
   * Whether the listener is reachable from the network, so everything but /healthz and
   * /readyz needs the token. Default: decided from the address the server is bound to.
   */
  exposed?: boolean
}

const MAX_BODY = 4096

/**
 * The admin listener (separate from the proxy, T11): health, readiness, metrics, and the
 * token-protected cache clear. The token is compared in constant time over hashes, so
 * neither its content nor its length leaks through timing.
 */
export function createAdminServer(o: AdminOptions): http.Server {
  const tokenHash = o.token === undefined ? undefined : sha256(o.token)
  // Until it is bound the server answers nothing; fail closed all the same.
  let exposed = o.exposed ?? true
  /** The admin token check; false once it has answered the request. */
  const authorized = (req: IncomingMessage, res: ServerResponse, path: string, what: string): boolean => {
    if (!tokenHash) {
      fail(res, 'admin_disabled', `no admin token is configured (admin.token or admin.tokenFile); ${what} disabled`)
      return false
    }
    if (!timingSafeEqual(sha256(bearerToken(req.headers.authorization)), tokenHash)) {
      o.logger.warn({ event: 'admin_unauthorized', path }, 'admin call with a missing or wrong token')
      fail(res, 'admin_unauthorized', 'missing or wrong admin token')
      return false
    }
    return true
  }
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (path === '/healthz') return get(req, res, () => json(res, 200, { status: 'ok' }))
    if (path === '/readyz') {
      return get(req, res, () => {
        const unready = o.unready()
        if (unready.length === 0) return json(res, 200, { status: 'ready' })
        json(res, 503, { status: 'not_ready', waiting: unready.map((u) => u.name), errors: unready.map((u) => ({ credential: u.name, code: u.code })) })
      })
    }
    if (path === '/metrics') {
      return get(req, res, () => {
        if (exposed && !authorized(req, res, path, 'on an admin listener off loopback, /metrics is')) return
        o.metrics.registry
          .metrics()
          .then((text) => {
            res.writeHead(200, { 'content-type': o.metrics.registry.contentType })
            res.end(text)
          })
          .catch(() => fail(res, 'not_found', 'metrics unavailable'))
      })
    }
    if (path === '/v1/cache/clear') {
      if (req.method !== 'POST') return fail(res, 'method_not_allowed', 'use POST')
      if (!authorized(req, res, path, 'mutating calls are')) return
      readJson(req)
        .then((body) => {
          const name = body?.credential
          if (name !== undefined && typeof name !== 'string') return fail(res, 'bad_request', 'credential must be a string')
          const cleared = o.clear(name)
          if (cleared === undefined) return fail(res, 'unknown_credential', `no credential named ${JSON.stringify(String(name).slice(0, 64))}`)
          o.logger.info({ event: 'cache_cleared', credential: name, cleared }, 'cache cleared by admin call')
          json(res, 200, { cleared })
        })
        .catch(() => fail(res, 'bad_request', `body must be a JSON object of at most ${MAX_BODY} bytes`))
      return
    }
    fail(res, 'not_found', 'no such endpoint')
  })
  if (o.exposed === undefined) {
    server.on('listening', () => {
      const a = server.address()
      exposed = a === null || typeof a === 'string' ? false : !isLoopbackHost(a.address)
    })
  }
  return server
}

/**
 * The credentials of `Authorization: Bearer <token>`. RFC 9110 §11.1: the scheme is
 * case-insensitive and one or more spaces follow it. Anything else presents the empty string,
 * which never equals a token (at least 16 characters).
 */
export function bearerToken(header: string | undefined): string {
  if (header === undefined || header.length < 7 || header.slice(0, 6).toLowerCase() !== 'bearer' || header.charCodeAt(6) !== 0x20) return ''
  let start = 7
  while (header.charCodeAt(start) === 0x20) start++
  let end = header.length
  while (end > start && header.charCodeAt(end - 1) === 0x20) end--
  return header.slice(start, end)
}

function get(req: IncomingMessage, res: ServerResponse, fn: () => void): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') return fail(res, 'method_not_allowed', 'use GET')
  fn()
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
  res.end(text)
}

function fail(res: ServerResponse, code: ErrorCode, message: string): void {
  sendError(res, code, message)
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest()
}

async function readJson(req: IncomingMessage): Promise<{ credential?: unknown } | undefined> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length
    if (size > MAX_BODY) throw new Error('too large')
    chunks.push(c)
  }
  const text = Buffer.concat(chunks).toString('utf8').trim()
  if (text === '') return undefined
  const v: unknown = JSON.parse(text)
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object')
  return v as { credential?: unknown }
}
