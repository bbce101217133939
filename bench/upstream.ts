/**
 * The upstream every proxy in the bench forwards to: a 200 with a small JSON body, keep-alive.
 * Run as its own process (`node bench/upstream.ts` prints `{"port":N}`) so neither the load
 * generator nor the proxy shares its event loop. nginx serves this role instead when installed
 * (bench/nginx.ts): it answers faster, so the upstream is never what limits a proxy row.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'

export const BODY = Buffer.from(JSON.stringify({ ok: true, pad: 'x'.repeat(200) }))

const server = http.createServer((req, res) => {
  req.resume()
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': BODY.length })
  res.end(BODY)
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ port: (server.address() as AddressInfo).port }) + '\n'))
process.on('SIGTERM', () => {
  server.close()
  server.closeAllConnections()
})
