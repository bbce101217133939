import type { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'
import { serializeError, type SerializedError } from './error-serializer.ts'
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
 * A provider failure is an expected, operational event (a variable unset, Vault down): its
 * message says what failed and where, and the stack trace is noise. Stacks of these errors,
 * and of their causes, are kept only at debug and trace; any other error keeps its stack.
 */
function errorSerializer(level: LogLevel): (e: unknown) => SerializedError | string {
  if (level === 'trace' || level === 'debug') return serializeError
  const strip = (s: SerializedError | string): SerializedError | string => {
    if (typeof s === 'string') return s
    const { stack: _stack, cause, ...rest } = s
    return cause === undefined ? rest : { ...rest, cause: strip(cause) }
  }
  return (e) => {
    const s = serializeError(e)
    return typeof s !== 'string' && s.type === 'ProviderError' ? strip(s) : s
  }
}

/**
 * Lines for people (pino-pretty): time, level name, message, then the fields. It reads the
 * finished JSON lines, so they have passed every redaction stage before they are reformatted.
 */
export async function createPrettyDestination(destination: Writable, colorize = false): Promise<Writable> {
  // Loaded only for people: a pod writing JSON lines never pays for it.
  const { build: prettyStream } = await import('pino-pretty')
  return prettyStream({ destination, colorize, sync: true, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname,name', hideObject: true, messageFormat: humanLine })
}

const NOT_FIELDS = new Set(['level', 'time', 'pid', 'hostname', 'name'])

/** `message  key=value key=value`: the fields on the same line, an error as `Type: message`. */
function humanLine(log: Record<string, unknown>, messageKey: string): string {
  const fields: string[] = []
  let stack = ''
  for (const [k, v] of Object.entries(log)) {
    if (NOT_FIELDS.has(k) || k === messageKey || v === undefined || v === null) continue
    if (typeof v === 'object' && !Array.isArray(v) && 'message' in v) {
      const e = v as { type?: unknown; message?: unknown; stack?: unknown }
      fields.push(`${k}=${JSON.stringify(`${String(e.type ?? 'Error')}: ${String(e.message)}`)}`)
      if (typeof e.stack === 'string') stack += `\n${e.stack}`
    } else fields.push(`${k}=${plain(v)}`)
  }
  return `${String(log[messageKey] ?? '')}${fields.length ? `  ${fields.join(' ')}` : ''}${stack}`
}

function plain(v: unknown): string {
  if (Array.isArray(v)) return v.map(plain).join(',')
  if (typeof v === 'object' && v !== null) return Object.entries(v).map(([k, x]) => `${k}:${plain(x)}`).join(',')
  const s = String(v)
  return /^[^\s"=]+$/.test(s) ? s : JSON.stringify(s)
}

/**
 * pino's `isoTime`, formatted once per millisecond: `toISOString` costs about 1 µs, and
 * under load many lines share a millisecond. The text is the same as `isoTime`'s.
 */
function isoTimeCached(): () => string {
  let at = NaN
  let text = ''
  return () => {
    const now = Date.now()
    if (now !== at) {
      at = now
      text = `,"time":"${new Date(now).toISOString()}"`
    }
    return text
  }
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
      timestamp: isoTimeCached(),
      serializers: { err: errorSerializer(opts.level), error: errorSerializer(opts.level), cause: errorSerializer(opts.level) },
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
