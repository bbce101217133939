import { pino, type Logger } from 'pino'
import { replaceErrors, serializeError } from './error-serializer.ts'
import { scrubPatterns } from './patterns.ts'
import type { Scrubber } from './scrubber.ts'
import { headerRedactPaths } from './sensitive-headers.ts'

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent'

export interface LoggerOptions {
  /** Lowest level written. */
  level: LogLevel
  /** Held secret values; every serialised line passes through it. */
  scrubber: Scrubber
  /** Where JSON lines go (default: stdout, asynchronously, flushed on exit). */
  destination?: NodeJS.WritableStream
  /** Header names a credential injects; redacted in logged header objects like `authorization`. */
  sensitiveHeaders?: readonly string[]
}

/**
 * Written instead of a line whose redaction threw: dropping one line is better than
 * writing it unscrubbed.
 */
const DROPPED_LINE = JSON.stringify({ level: 50, name: 'latchkey', event: 'log_redaction_failed', msg: 'a log line was dropped because redaction failed' }) + '\n'

/**
 * The project's logger: pino JSON lines with three redaction layers, all set up here once.
 *
 * 1. `redact` paths censor sensitive header names in any logged `headers` object.
 * 2. Errors (under any key, at any depth up to 4) are reduced to an allow-list of fields,
 *    so an SDK error's request config, headers and response body never reach the line.
 * 3. `hooks.streamWrite` runs the finished line through the scrubber (every held secret
 *    in every encoding) and the patterns (token shapes nobody registered). This sees
 *    everything: `msg`, bindings of child loggers, nested objects, `err.stack`, `err.cause`.
 */
export function createLogger(opts: LoggerOptions): Logger {
  const { scrubber } = opts
  const destination = opts.destination ?? pino.destination({ dest: 1, sync: false })
  return pino(
    {
      level: opts.level,
      base: { name: 'latchkey' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: headerRedactPaths(opts.sensitiveHeaders), censor: '[REDACTED]' },
      serializers: { err: serializeError, error: serializeError, cause: serializeError },
      formatters: { log: replaceErrors },
      hooks: {
        streamWrite(line: string): string {
          try {
            return scrubPatterns(scrubber.scrub(line))
          } catch {
            return DROPPED_LINE
          }
        },
      },
    },
    destination,
  )
}
