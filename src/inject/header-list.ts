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

/** Whether the request carries a header (name in lowercase). */
export function hasHeader(headers: Headers, lowerName: string): boolean {
  for (const [name] of pairs(headers)) if (name.toLowerCase() === lowerName) return true
  return false
}

/** The headers with every field called `lowerName` replaced by one `name: value`. */
export function withHeader(headers: Headers, lowerName: string, value: string): string[] {
  const out: string[] = []
  for (const [name, v] of pairs(headers)) if (name.toLowerCase() !== lowerName) out.push(name, v)
  out.push(lowerName, value)
  return out
}
