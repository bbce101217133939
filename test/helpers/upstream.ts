import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'

export interface Received {
  method: string
  url: string
  headers: IncomingHttpHeaders
  rawHeaders: string[]
  body: Buffer
}

export interface Upstream {
  url: string
  port: number
  received: Received[]
  /** Replace the handler (default: 200 JSON echo of method/url/headers). */
  handle(fn: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void): void
  /** Answer 401 unless the given header holds exactly this value. */
  requireHeader(name: string, value: string | (() => string)): void
  close(): Promise<void>
}

/** A real HTTP or HTTPS server on 127.0.0.1 port 0 that records every request it receives. */
export async function startUpstream(tls?: { cert: string; key: string }): Promise<Upstream> {
  const received: Received[] = []
  let handler = (req: IncomingMessage, res: ServerResponse, _body: Buffer) => {
    const text = JSON.stringify({ method: req.method, url: req.url, headers: req.headers })
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(text)
  }
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body })
      handler(req, res, body)
    })
  }
  const server = tls ? https.createServer({ cert: tls.cert, key: tls.key }, onRequest) : http.createServer(onRequest)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  return {
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    received,
    handle(fn) {
      handler = fn
    },
    requireHeader(name, value) {
      handler = (req, res, body) => {
        const expected = typeof value === 'function' ? value() : value
        if (req.headers[name.toLowerCase()] !== expected) {
          res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' })
          res.end('{"error":"unauthorized"}')
          return
        }
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ ok: true, bytes: body.length }))
      }
    },
    close() {
      server.closeAllConnections?.()
      return new Promise((r) => server.close(() => r()))
    },
  }
}
