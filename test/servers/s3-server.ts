import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import https from 'node:https'
import zlib from 'node:zlib'
import type { AddressInfo } from 'node:net'
import type { AwsCredentials } from './aws-server.ts'

/**
 * An S3-compatible object store for tests (path-style `/<bucket>/<key>`): GET, PUT, DELETE of
 * objects and `GET /<bucket>?list-type=2` (ListObjectsV2). Every request must carry a valid
 * SigV4 `Authorization` header, checked here by a verifier written from the AWS specification
 * ("Create a canonical request for Signature Version 4", S3's "Signature Calculations for the
 * Authorization Header") with node:crypto alone, so it does not share code with the signer
 * under test. S3's rules: the path is encoded once, `x-amz-content-sha256` is required and is
 * the payload hash (`UNSIGNED-PAYLOAD` or the body's hex SHA-256, which is then checked).
 */

export interface S3Server {
  url: string
  host: string
  region: string
  objects: Map<string, Buffer>
  /** Size and SHA-256 (hex) of every object stored, including those too large to keep. */
  stored: Map<string, { size: number; sha256: string }>
  /** Every request, with the verifier's verdict. */
  readonly log: Array<{ method: string; path: string; status: number; code: string | undefined; payloadHash: string | undefined }>
  close(): Promise<void>
}

const UNRESERVED = /[A-Za-z0-9\-._~]/

/** RFC 3986 encoding as SigV4 wants it: everything but unreserved characters, as %XX upper case. */
export function awsEncode(s: string): string {
  let out = ''
  for (const byte of Buffer.from(s, 'utf8')) {
    const ch = String.fromCharCode(byte)
    out += byte < 0x80 && UNRESERVED.test(ch) ? ch : '%' + byte.toString(16).toUpperCase().padStart(2, '0')
  }
  return out
}

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest()
}

/** Verify a request's SigV4 Authorization header; returns an S3 error code, or undefined when authentic. */
export function verifySigV4(req: { method: string; rawPath: string; headers: IncomingMessage['headers'] }, opts: { region: string; service: string; keys: AwsCredentials[]; maxSkewMs?: number }): string | undefined {
  const auth = String(req.headers.authorization ?? '')
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(auth)
  if (!m) return 'AccessDenied'
  const [, akid, day, region, service, signedList = '', signature = ''] = m
  const key = opts.keys.find((k) => k.accessKeyId === akid)
  if (!key) return 'InvalidAccessKeyId'
  if (region !== opts.region || service !== opts.service) return 'AuthorizationHeaderMalformed'
  const amzDate = String(req.headers['x-amz-date'] ?? '')
  if (!/^\d{8}T\d{6}Z$/.test(amzDate) || amzDate.slice(0, 8) !== day) return 'AccessDenied'
  const at = Date.UTC(+amzDate.slice(0, 4), +amzDate.slice(4, 6) - 1, +amzDate.slice(6, 8), +amzDate.slice(9, 11), +amzDate.slice(11, 13), +amzDate.slice(13, 15))
  if (Math.abs(at - Date.now()) > (opts.maxSkewMs ?? 15 * 60_000)) return 'RequestTimeTooSkewed'
  const signed = signedList.split(';')
  if (!signed.includes('host') || !signed.includes('x-amz-date')) return 'AccessDenied'
  // Every x-amz-* header sent must be signed.
  for (const h of Object.keys(req.headers)) if (h.startsWith('x-amz-') && !signed.includes(h)) return 'AccessDenied'
  if (key.sessionToken !== undefined && req.headers['x-amz-security-token'] !== key.sessionToken) return 'InvalidToken'
  const payloadHash = req.headers['x-amz-content-sha256']
  if (typeof payloadHash !== 'string') return 'InvalidRequest'

  const [rawPath = '/', rawQuery = ''] = req.rawPath.split(/\?(.*)/s)
  const canonicalUri = rawPath.split('/').map((seg) => awsEncode(decodeURIComponent(seg))).join('/')
  const params = rawQuery === '' ? [] : rawQuery.split('&').map((p) => {
    const eq = p.indexOf('=')
    const k = decodeURIComponent((eq === -1 ? p : p.slice(0, eq)).replace(/\+/g, ' '))
    const v = eq === -1 ? '' : decodeURIComponent(p.slice(eq + 1).replace(/\+/g, ' '))
    return [awsEncode(k), awsEncode(v)] as const
  })
  params.sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
  const canonicalQuery = params.map(([k, v]) => `${k}=${v}`).join('&')
  let canonicalHeaders = ''
  for (const name of signed) {
    const v = req.headers[name]
    if (v === undefined) return 'AccessDenied'
    canonicalHeaders += `${name}:${[v].flat().map((x) => x.trim().replace(/\s+/g, ' ')).join(',')}\n`
  }
  const canonicalRequest = [req.method, canonicalUri, canonicalQuery, canonicalHeaders, signedList, payloadHash].join('\n')
  const scope = `${day}/${region}/${service}/aws4_request`
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonicalRequest, 'utf8').digest('hex')].join('\n')
  const signingKey = hmac(hmac(hmac(hmac(`AWS4${key.secretAccessKey}`, day ?? ''), region ?? ''), service ?? ''), 'aws4_request')
  const expected = createHmac('sha256', signingKey).update(stringToSign, 'utf8').digest('hex')
  return timingSafeEqual(Buffer.from(expected), Buffer.from(signature)) ? undefined : 'SignatureDoesNotMatch'
}

/**
 * `keys` is read on each request, so a test can rotate them by changing the array. `tls`
 * serves https. Bodies over `keepBodiesUpTo` bytes are hashed and counted as they stream in,
 * not kept (a large upload through the proxy must not fill the test process).
 */
export async function startS3Server(opts: { region?: string; keys: AwsCredentials[]; tls?: { cert: string; key: string }; keepBodiesUpTo?: number }): Promise<S3Server> {
  const region = opts.region ?? 'us-east-1'
  const keep = opts.keepBodiesUpTo ?? Number.POSITIVE_INFINITY
  const objects = new Map<string, Buffer>()
  const stored = new Map<string, { size: number; sha256: string }>()
  const log: S3Server['log'] = []
  const fail = (res: ServerResponse, status: number, code: string) => {
    res.writeHead(status, { 'content-type': 'application/xml' })
    res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${code}</Message></Error>`)
  }
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const rawPath = req.url ?? '/'
    const entry = { method: req.method ?? '', path: rawPath, status: 0, code: undefined as string | undefined, payloadHash: req.headers['x-amz-content-sha256'] as string | undefined }
    log.push(entry)
    res.on('finish', () => (entry.status = res.statusCode))
    const denied = verifySigV4({ method: req.method ?? '', rawPath, headers: req.headers }, { region, service: 's3', keys: opts.keys })
    if (denied) {
      entry.code = denied
      req.resume()
      return fail(res, 403, denied)
    }
    if (req.headers['x-amz-content-sha256'] === 'STREAMING-UNSIGNED-PAYLOAD-TRAILER') return putChunked(req, res, entry)
    const hash = createHash('sha256')
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size <= keep) chunks.push(c)
      hash.update(c)
    })
    req.on('end', () => {
      const claimed = req.headers['x-amz-content-sha256']
      const digest = hash.digest('hex')
      if (claimed !== 'UNSIGNED-PAYLOAD' && claimed !== digest) {
        entry.code = 'XAmzContentSHA256Mismatch'
        return fail(res, 400, 'XAmzContentSHA256Mismatch')
      }
      const url = new URL(rawPath, 'http://x')
      const [, bucket = '', ...rest] = url.pathname.split('/')
      const key = rest.map((s) => decodeURIComponent(s)).join('/')
      if (req.method === 'GET' && key === '' && url.searchParams.get('list-type') === '2') {
        const prefix = url.searchParams.get('prefix') ?? ''
        const keys = [...new Set([...objects.keys(), ...stored.keys()])].filter((k) => k.startsWith(`${bucket}/${prefix}`)).map((k) => k.slice(bucket.length + 1)).sort()
        res.writeHead(200, { 'content-type': 'application/xml' })
        return res.end(`<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>${bucket}</Name><KeyCount>${keys.length}</KeyCount>${keys.map((k) => `<Contents><Key>${k}</Key></Contents>`).join('')}</ListBucketResult>`)
      }
      if (req.method === 'PUT') {
        stored.set(`${bucket}/${key}`, { size, sha256: digest })
        if (size <= keep) objects.set(`${bucket}/${key}`, Buffer.concat(chunks))
        res.writeHead(200, { etag: '"1"' })
        return res.end()
      }
      if (req.method === 'GET') {
        const body = objects.get(`${bucket}/${key}`)
        if (!body) return fail(res, 404, 'NoSuchKey')
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) })
        return res.end(body)
      }
      return fail(res, 405, 'MethodNotAllowed')
    })
  }
  /**
   * An aws-chunked body with an unsigned trailer (what newer AWS SDKs send for a PUT): chunks of
   * `<hex size>\r\n<data>\r\n`, a `0` chunk, then the checksum trailer. The decoded length and a
   * CRC32 trailer are checked, as S3 does; small bodies only.
   */
  const putChunked = (req: IncomingMessage, res: ServerResponse, entry: S3Server['log'][number]) => {
    const parts: Buffer[] = []
    req.on('data', (c: Buffer) => parts.push(c))
    req.on('end', () => {
      const raw = Buffer.concat(parts)
      const data: Buffer[] = []
      let at = 0
      let trailer: string
      for (;;) {
        const eol = raw.indexOf('\r\n', at)
        if (eol === -1) return fail(res, 400, 'IncompleteBody')
        const size = parseInt(raw.subarray(at, eol).toString('latin1').split(';')[0] ?? '', 16)
        if (!Number.isFinite(size)) return fail(res, 400, 'InvalidChunkSizeError')
        at = eol + 2
        if (size === 0) {
          trailer = raw.subarray(at).toString('latin1')
          break
        }
        data.push(raw.subarray(at, at + size))
        at += size + 2
      }
      const body = Buffer.concat(data)
      if (String(body.length) !== req.headers['x-amz-decoded-content-length']) return fail(res, 400, 'IncompleteBody')
      const crc = /x-amz-checksum-crc32:([A-Za-z0-9+/=]+)/.exec(trailer)?.[1]
      if (crc !== undefined) {
        const want = Buffer.alloc(4)
        want.writeUInt32BE(zlib.crc32(body))
        if (crc !== want.toString('base64')) return fail(res, 400, 'BadDigest')
      }
      const [, bucket = '', ...rest] = new URL(req.url ?? '/', 'http://x').pathname.split('/')
      const key = `${bucket}/${rest.map((x) => decodeURIComponent(x)).join('/')}`
      stored.set(key, { size: body.length, sha256: createHash('sha256').update(body).digest('hex') })
      objects.set(key, body)
      entry.code = undefined
      res.writeHead(200, { etag: '"1"' })
      res.end()
    })
  }
  const server = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, onRequest) : http.createServer(onRequest)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  return {
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    region,
    objects,
    stored,
    log,
    close() {
      server.closeAllConnections()
      return new Promise((r) => server.close(() => r()))
    },
  }
}
