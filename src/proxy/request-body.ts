import type { IncomingMessage } from 'node:http'

/** A request body ready to send: buffered (replayable) or a stream (sent once). */
export type PreparedBody =
  | { replayable: true; body: Buffer | null }
  | { replayable: false; body: AsyncIterable<Buffer> }

/** True when the request has a body by its framing headers (RFC 9112 §6.3). */
export function hasBody(req: IncomingMessage): boolean {
  const te = req.headers['transfer-encoding']
  if (te !== undefined) return true
  const cl = req.headers['content-length']
  return cl !== undefined && cl !== '0'
}

/**
 * Buffer up to `limit` bytes so the request can be replayed after a credential bust.
 * A longer body is streamed on (what was read, then the rest) and is not replayable.
 */
export async function prepareBody(req: IncomingMessage, limit: number): Promise<PreparedBody> {
  if (!hasBody(req)) return { replayable: true, body: null }
  const declared = Number(req.headers['content-length'])
  if (Number.isFinite(declared) && declared > limit) return { replayable: false, body: req }
  const it = req[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  const chunks: Buffer[] = []
  let size = 0
  for (;;) {
    const r = await it.next()
    if (r.done) return { replayable: true, body: Buffer.concat(chunks, size) }
    chunks.push(r.value)
    size += r.value.length
    if (size > limit) {
      return {
        replayable: false,
        body: (async function* () {
          yield* chunks
          for (;;) {
            const n = await it.next()
            if (n.done) return
            yield n.value
          }
        })(),
      }
    }
  }
}
