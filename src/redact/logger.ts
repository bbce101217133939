import { pino, type Logger } from 'pino'
import { serializeError } from './error-serializer.ts'
import { compileLogObjectRedactor } from './log-object.ts'
import { scrubPatterns } from './patterns.ts'
import type { Scrubber } from './scrubber.ts'
import { sensitiveHeaderSet } from './sensitive-headers.ts'

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent'

export interface LoggerOptions {
  /** Lowest level written. */
  level: LogLevel
  /** Held secret values; every serialised line passes through it. */
  scrubber: Scrubber
  /** Where JSON lines go (default: stdout, asynchronously, flushed on exit). */
  destination?: NodeJS.WritableStream
  /** Header names the credentials inject; censored in logged header collections like `authorization`. */
  sensitiveHeaders?: readonly string[]
}

/**
 * Written instead of a line whose redaction threw: dropping one line is better than
 * writing it unscrubbed.
 */
const DROPPED_LINE = JSON.stringify({ level: 50, name: 'latchkey', event: 'log_redaction_failed', msg: 'a log line was dropped because redaction failed' }) + '\n'

/**
 * The project's logger: pino JSON lines behind two redaction stages, both compiled here once.
 *
 * 1. Structure (`formatters.log`, and `child()` bindings, see `log-object.ts`): sensitive header values are
 *    censored in any logged `headers` collection, whatever the casing of the name; Errors
 *    under any key are reduced to an allow-list of fields (`serializeError`, also the `err`,
 *    `error` and `cause` serializers), so an SDK error's request config, headers and response
 *    body never reach the line; buffers are not dumped as byte arrays.
 * 2. `hooks.streamWrite` runs the finished line through the scrubber (every held secret
 *    in every encoding) and the patterns (token shapes nobody registered). This sees
 *    everything: `msg`, printf arguments, bindings of child loggers, nested objects, `err.stack`, `err.cause`.
 */
export function createLogger(opts: LoggerOptions): Logger {
  const { scrubber } = opts
  const redactObject = compileLogObjectRedactor(sensitiveHeaderSet(opts.sensitiveHeaders))
  const destination = opts.destination ?? pino.destination({ dest: 1, sync: false })
  const logger = pino(
    {
      level: opts.level,
      base: { name: 'latchkey' },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: { err: serializeError, error: serializeError, cause: serializeError },
      formatters: { log: redactObject },
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
  // pino applies `formatters.bindings` to the base bindings only, not to a child's; so the
  // structure layer wraps `child` itself. Children are created with `Object.create(parent)`,
  // so grandchildren inherit the wrapper.
  const child = logger.child
  logger.child = function (this: Logger, bindings, options) {
    return child.call(this, redactObject(bindings), options)
  } as typeof logger.child
  return logger
}
