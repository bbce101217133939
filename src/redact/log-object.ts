import { serializeError } from './error-serializer.ts'

const CENSOR = '[REDACTED]'

/** Objects deeper than this are left to JSON (and to the scrubber and patterns after it). */
const WALK_DEPTH = 5
/** Nodes visited per log object before the walk gives up (a huge object is left to the line scrubbers). */
const WALK_BUDGET = 200

/** Keys under which a header collection is logged. */
const HEADER_KEYS = new Set(['headers', 'rawheaders'])

function isPlain(v: object): boolean {
  const proto: unknown = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null || Array.isArray(v)
}

/**
 * Compiles the structural redaction layer, run as pino's `formatters.log` on every log
 * object before it is serialised. It walks the object (plain objects and arrays, 5 levels,
 * at most 200 nodes) and:
 *
 * - censors sensitive header values in any `headers` / `rawHeaders` collection at any of
 *   those levels (`headers`, `req.headers`, `res.headers`, `request.headers`,
 *   `upstream.response.headers`, ...), matching names case-insensitively: a plain object,
 *   a flat `[name, value, ...]` array (Node's `rawHeaders`) or `[name, value]` pairs;
 * - replaces every Error, under any key, by its allow-listed form (`serializeError`);
 * - replaces binary buffers, which JSON would print as byte arrays that no text scrubber
 *   recognises, by `[binary N bytes]`.
 *
 * It does here what pino's `redact` paths would, because redact wildcard paths
 * (`*.headers.x`) cost 35-80 µs per line in pino 10, and paths are case-sensitive.
 * Copy on write: the caller's objects are never modified, and an object that needs no
 * change is returned as is (the common case allocates nothing).
 */
export function compileLogObjectRedactor(sensitiveHeaders: ReadonlySet<string>): <T extends object>(obj: T) => T {
  function censorHeaders(h: unknown): unknown {
    if (typeof h !== 'object' || h === null) return undefined
    if (Array.isArray(h)) {
      let copy: unknown[] | undefined
      const pairs = h.length > 0 && h.every((e) => Array.isArray(e))
      for (let i = 0; i < h.length; i++) {
        if (pairs) {
          const pair = h[i] as unknown[]
          if (typeof pair[0] === 'string' && sensitiveHeaders.has(pair[0].toLowerCase()) && pair.length > 1) {
            copy ??= [...h]
            copy[i] = [pair[0], CENSOR]
          }
        } else if (i % 2 === 0 && typeof h[i] === 'string' && sensitiveHeaders.has((h[i] as string).toLowerCase()) && i + 1 < h.length) {
          copy ??= [...h]
          copy[i + 1] = CENSOR
        }
      }
      return copy
    }
    if (!isPlain(h)) return undefined
    let copy: Record<string, unknown> | undefined
    const src = h as Record<string, unknown>
    for (const name of Object.keys(src)) {
      if (src[name] !== undefined && sensitiveHeaders.has(name.toLowerCase())) {
        copy ??= { ...src }
        copy[name] = CENSOR
      }
    }
    return copy
  }

  /** Nodes the current walk may still visit (one walk at a time: it is synchronous). */
  let budget = 0

  /** A replacement for `v`, or undefined when `v` needs none. */
  function walk(v: object, depth: number): unknown {
    if (v instanceof Error) return serializeError(v)
    if (ArrayBuffer.isView(v)) return `[binary ${v.byteLength} bytes]`
    if (depth >= WALK_DEPTH || !isPlain(v) || --budget < 0) return undefined
    let copy: Record<string, unknown> | unknown[] | undefined
    const src = v as Record<string, unknown>
    for (const key of Object.keys(src)) {
      const value = src[key]
      // Strings, numbers and the like need nothing here (the line scrubbers see them): most
      // fields of most lines, so they cost no lower-casing of their key.
      if (typeof value !== 'object' || value === null) continue
      const replaced = HEADER_KEYS.has(key.toLowerCase()) ? censorHeaders(value) : walk(value, depth + 1)
      if (replaced === undefined) continue
      copy ??= Array.isArray(v) ? [...v] : { ...src }
      ;(copy as Record<string, unknown>)[key] = replaced
    }
    return copy
  }

  return function redactLogObject<T extends object>(obj: T): T {
    if (typeof obj !== 'object' || obj === null) return obj
    budget = WALK_BUDGET
    return (walk(obj, 0) ?? obj) as T
  }
}
