import { Writable } from 'node:stream'
import type { LogCapture } from './log-capture.ts'

type LogRecord = Record<string, unknown>

export interface LogWaiter {
  /** Give this to the daemon (`logStream`): every line goes on to the capture as well. */
  stream: Writable
  /**
   * The first record from index `from` on (of all records written) that matches, as soon as
   * it is written. Fails after `timeoutMs` (a bound for a broken build, not a timing
   * assertion), naming `what`.
   */
  next(what: string, match: (r: LogRecord) => boolean, opts?: { from?: number; timeoutMs?: number }): Promise<LogRecord & { index: number }>
  /** How many records have been written (a `from` for `next`). */
  count(): number
}

/** Wait on log lines as events: a test resumes the moment the daemon writes the line it needs. */
export function logWaiter(capture: LogCapture): LogWaiter {
  const records: LogRecord[] = []
  const waiters = new Set<() => void>()
  let partial = ''
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      const text = typeof chunk === 'string' ? chunk : chunk.toString('utf8')
      capture.stream.write(chunk)
      const lines = (partial + text).split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) if (line.trim() !== '') records.push(JSON.parse(line) as LogRecord)
      for (const w of [...waiters]) w()
      cb()
    },
  })
  return {
    stream,
    count: () => records.length,
    next(what, match, { from = 0, timeoutMs = 20_000 } = {}) {
      return new Promise((resolve, reject) => {
        const check = () => {
          for (let i = from; i < records.length; i++) {
            const r = records[i] as LogRecord
            if (match(r)) {
              waiters.delete(check)
              clearTimeout(timer)
              resolve({ ...r, index: i })
              return
            }
          }
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(new Error(`no log line for ${what} within ${timeoutMs} ms`))
        }, timeoutMs)
        waiters.add(check)
        check()
      })
    },
  }
}
