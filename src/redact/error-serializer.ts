/**
 * Errors as they are logged: an allow-list of fields, never the whole object. SDK errors
 * carry their request config (with headers), the response (with body) and sometimes the
 * credentials they were built with as enumerable properties; pino's default serializer
 * would copy all of them into the line. Whatever this keeps still passes through the
 * scrubber and the patterns, which cover `message` and `stack`.
 */

/** How many `cause` links are followed (a cycle, or a very long chain, stops here). */
export const MAX_CAUSE_DEPTH = 5
/** At most this many entries of an `AggregateError`'s `errors` are kept. */
const MAX_AGGREGATED = 5

export interface SerializedError {
  type: string
  message: string
  stack?: string
  code?: string | number
  providerCode?: string
  status?: number
  cause?: SerializedError | string
  errors?: Array<SerializedError | string>
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null
}

function typeName(e: Record<string, unknown>): string {
  if (typeof e.type === 'string' && !(e instanceof Error)) return e.type
  const ctor = (e as { constructor?: { name?: unknown } }).constructor
  if (typeof ctor?.name === 'string' && ctor.name !== 'Object' && ctor.name !== '') return ctor.name
  return typeof e.name === 'string' ? e.name : 'Error'
}

/** The HTTP status an error reports, wherever its library keeps it. */
function statusOf(e: Record<string, unknown>): number | undefined {
  if (typeof e.status === 'number') return e.status
  if (typeof e.statusCode === 'number') return e.statusCode
  const meta = e.$metadata
  if (isRecord(meta) && typeof meta.httpStatusCode === 'number') return meta.httpStatusCode
  const response = e.response
  if (isRecord(response) && typeof response.status === 'number') return response.status
  return undefined
}

function serialize(value: unknown, depth: number): SerializedError | string {
  if (!isRecord(value)) return String(value)
  const e = value
  const out: SerializedError = { type: typeName(e), message: typeof e.message === 'string' ? e.message : String(e.message ?? '') }
  if (typeof e.stack === 'string') out.stack = e.stack
  if (typeof e.code === 'string' || typeof e.code === 'number') out.code = e.code
  if (typeof e.providerCode === 'string') out.providerCode = e.providerCode
  const status = statusOf(e)
  if (status !== undefined) out.status = status
  if (depth < MAX_CAUSE_DEPTH) {
    if (e.cause !== undefined && e.cause !== null) out.cause = serialize(e.cause, depth + 1)
    if (Array.isArray(e.errors)) out.errors = e.errors.slice(0, MAX_AGGREGATED).map((x: unknown) => serialize(x, depth + 1))
  }
  return out
}

/**
 * The pino serializer for `err` (and `error`, `cause`): keeps `type`, `message`, `stack`,
 * `code`, `providerCode`, `status` and a `cause` chain up to `MAX_CAUSE_DEPTH` deep; drops
 * every other property. Never throws: a hostile getter yields a placeholder.
 */
export function serializeError(value: unknown): SerializedError | string {
  try {
    return serialize(value, 0)
  } catch {
    return { type: 'Error', message: '[error could not be serialized]' }
  }
}
