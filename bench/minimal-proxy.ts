/**
 * The Node ceiling the bench compares latchkey with: a `node:http` server and one undici
 * `Agent`, adding one header, nothing else (no config, no logging, no metrics). It answers
 * both ways latchkey is measured: a reverse route (`/up/<path>` → `UPSTREAM<path>`) and a
 * forward proxy (absolute-form `http://host:port/path`). Responses are written straight from
 * undici's dispatch handler to the `ServerResponse` (no per-request promise or stream).
 *
 * `node bench/minimal-proxy.ts UPSTREAM_ORIGIN` prints `{"port":N}` on stdout when listening.
 */
import http, { type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Agent, type Dispatcher } from 'undici'

const upstream = process.argv[2]
if (!upstream) throw new Error('usage: node bench/minimal-proxy.ts UPSTREAM_ORIGIN')
const agent = new Agent({ connections: 64, keepAliveTimeout: 60_000 })
const AUTH = 'Bearer bench-token-value-0123456789'
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'proxy-authorization'])

function copyHeaders(from: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const k in from) if (!HOP.has(k)) out[k] = from[k] as string | string[]
  return out
}

const server = http.createServer((req, res) => {
  const url = req.url ?? '/'
  let origin: string
  let path: string
  if (url.startsWith('http://')) {
    const u = new URL(url)
    origin = u.origin
    path = u.pathname + u.search
  } else {
    origin = upstream
    path = url.startsWith('/up/') ? url.slice(3) : url
  }
  const headers = copyHeaders(req.headers)
  delete headers.host
  headers.authorization = AUTH
  const handler: Dispatcher.DispatchHandler = {
    onRequestStart() {},
    onResponseStart(_c, statusCode, h) {
      res.writeHead(statusCode, copyHeaders(h))
    },
    onResponseData(_c, chunk) {
      res.write(chunk)
    },
    onResponseEnd() {
      res.end()
    },
    onResponseError(_c, err) {
      if (!res.headersSent) res.writeHead(502).end(err.message)
      else res.destroy(err)
    },
  }
  agent.dispatch({ origin, path, method: req.method as Dispatcher.HttpMethod, headers, body: req.method === 'GET' || req.method === 'HEAD' ? null : req }, handler)
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ port: (server.address() as AddressInfo).port }) + '\n'))
process.on('SIGTERM', () => {
  server.close()
  server.closeAllConnections()
  void agent.close()
})
