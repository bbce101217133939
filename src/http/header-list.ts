import type { Dispatcher } from 'undici'

type Headers = Dispatcher.DispatchOptions['headers']

/**
 * undici accepts request headers as an object, a flat `[name, value, ...]` array, an array
 * of pairs, or any iterable of pairs (`Headers`, `Map`). These helpers read all of them and
 * write a flat array, which keeps repeated fields and their order.
 */
function* pairs(headers: Headers): Generator<[string, string]> {
  if (headers === null || headers === undefined) return
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) {
      for (const p of headers as unknown as Array<[unknown, unknown]>) yield [String(p[0]), String(p[1])]
      return
    }
    for (let i = 0; i + 1 < headers.length; i += 2) yield [String(headers[i]), String(headers[i + 1])]
    return
  }
  if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === 'function') {
    for (const p of headers as Iterable<[unknown, unknown]>) yield [String(p[0]), String(p[1])]
    return
  }
  for (const [name, value] of Object.entries(headers as Record<string, unknown>)) {
    if (value === undefined || value === null) continue
    if (Array.isArray(value)) for (const v of value) yield [name, String(v)]
    else yield [name, String(value)]
  }
}

/** Every header field as `[name, value]`, whatever shape undici was given. */
export function headerPairs(headers: Headers): Iterable<[string, string]> {
  return pairs(headers)
}

/** A flat `[name, value, ...]` list of strings (what the daemon builds): read without a generator. */
function isFlat(headers: Headers): headers is string[] {
  return Array.isArray(headers) && (headers.length === 0 || typeof headers[0] === 'string')
}

/** Same field name, ignoring case; the length is compared first so most names cost no lowercasing. */
function sameName(name: string, lowerName: string): boolean {
  return name.length === lowerName.length && (name === lowerName || name.toLowerCase() === lowerName)
}

/** Whether the request carries a header (name in lowercase). */
export function hasHeader(headers: Headers, lowerName: string): boolean {
  if (isFlat(headers)) {
    for (let i = 0; i < headers.length; i += 2) if (sameName(headers[i] as string, lowerName)) return true
    return false
  }
  for (const [name] of pairs(headers)) if (name.toLowerCase() === lowerName) return true
  return false
}

/** The first value of a header (name in lowercase), if the request carries it. */
export function headerValue(headers: Headers, lowerName: string): string | undefined {
  if (isFlat(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) if (sameName(headers[i] as string, lowerName)) return headers[i + 1] as string
    return undefined
  }
  for (const [name, value] of pairs(headers)) if (name.toLowerCase() === lowerName) return value
  return undefined
}

/** The headers with every field called `lowerName` replaced by one `name: value`. */
export function withHeader(headers: Headers, lowerName: string, value: string): string[] {
  const out: string[] = []
  if (isFlat(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) {
      const name = headers[i] as string
      if (!sameName(name, lowerName)) out.push(name, headers[i + 1] as string)
    }
    out.push(lowerName, value)
    return out
  }
  for (const [name, v] of pairs(headers)) if (name.toLowerCase() !== lowerName) out.push(name, v)
  out.push(lowerName, value)
  return out
}
