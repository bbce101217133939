import type { ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { ERROR_CODES, type ErrorCode } from '../errors.ts'

/**
 * Refusals and failures: a JSON body `{"error": code, "message": ...}` and an
 * `X-Latchkey-Error` header. Messages name credentials, hosts and codes — never values.
 */
export function sendError(res: ServerResponse, code: ErrorCode, message: string): void {
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
  })
  res.end(body)
}

/** The same refusal written raw on a socket (CONNECT, client errors), then the socket is closed. */
export function sendSocketError(socket: Duplex, code: ErrorCode, message: string): void {
  if (!socket.writable) {
    socket.destroy()
    return
  }
  const status = ERROR_CODES[code].status
  const body = JSON.stringify({ error: code, message })
  socket.end(
    `HTTP/1.1 ${status} ${reason(status)}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-latchkey-error: ${code}\r\nconnection: close\r\n\r\n${body}`,
  )
}

function reason(status: number): string {
  switch (status) {
    case 400: return 'Bad Request'
    case 403: return 'Forbidden'
    case 404: return 'Not Found'
    case 408: return 'Request Timeout'
    case 431: return 'Request Header Fields Too Large'
    case 502: return 'Bad Gateway'
    case 503: return 'Service Unavailable'
    case 504: return 'Gateway Timeout'
    default: return 'Error'
  }
}
