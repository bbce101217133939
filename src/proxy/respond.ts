import type { ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { ERROR_CODES, type ErrorCode } from '../errors.ts'

/**
 * Refusals and failures: a JSON body `{"error": code, "message": ...}` and an
 * `X-Latchkey-Error` header. Messages name credentials, hosts and codes — never values.
 */
export function sendError(res: ServerResponse, code: ErrorCode, message: string, extra?: Readonly<Record<string, string>>): void {
  const status = ERROR_CODES[code].status
  if (res.headersSent) {
    res.destroy()
    return
  }
  const body = JSON.stringify({ error: code, message })
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-latchkey-error': code,
    'cache-control': 'no-store',
    ...extra,
  })
  res.end(body)
}

/**
 * The same refusal written raw on a socket (CONNECT, client errors), then the socket is closed.
 * A client never shows the body of a refused CONNECT (curl prints only "CONNECT tunnel failed,
 * response 403"), so the code and message also go in the status line's reason phrase and in a
 * `Proxy-Status` header (RFC 9209), both of which `curl -v` prints.
 */
export function sendSocketError(socket: Duplex, code: ErrorCode, message: string, extra?: Readonly<Record<string, string>>): void {
  if (!socket.writable) {
    socket.destroy()
    return
  }
  const status = ERROR_CODES[code].status
  const body = JSON.stringify({ error: code, message })
  // Reason phrase and header value allow visible ASCII, space and tab only (RFC 9112 §4).
  const text = message.replace(/[^\t\x20-\x7e]/g, '?')
  const kind = status === 403 ? 'http_request_denied' : status < 500 ? 'http_request_error' : 'proxy_internal_error'
  const proxyStatus = `latchkey; error=${kind}; details="${code}: ${text.replace(/["\\]/g, '\\$&')}"`
  const more = extra === undefined ? '' : Object.entries(extra).map(([k, v]) => `${k}: ${v}\r\n`).join('')
  socket.end(
    `HTTP/1.1 ${status} ${code}: ${text}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-latchkey-error: ${code}\r\nproxy-status: ${proxyStatus}\r\n${more}connection: close\r\n\r\n${body}`,
  )
}
