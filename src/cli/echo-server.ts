import http from 'node:http'

/**
 * A tiny upstream that answers every request with what it received (method, path,
 * headers) as JSON. For the demo and for checking what your upstream would see; it
 * is not part of the broker and never holds a secret of its own.
 */
export function createEchoServer(): http.Server {
  return http.createServer((req, res) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size <= 65_536) chunks.push(c)
    })
    req.on('end', () => {
      const body = JSON.stringify({ method: req.method, path: req.url, headers: req.headers, bodyBytes: size }, null, 2) + '\n'
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
  })
}
