/**
 * Reading parts of a JSON secret. Errors raised by callers never quote the secret: in
 * particular a `JSON.parse` SyntaxError is never passed on, because V8 puts a snippet of the
 * input into its message.
 */

/** The secret parsed as a JSON object, or undefined when it is not one (arrays and null are not objects here). */
export function parseJsonObject(text: string): Record<string, unknown> | undefined {
  // Cheap pre-check so a plain token never pays for a parse attempt.
  let i = 0
  while (i < text.length && isJsonSpace(text.charCodeAt(i))) i++
  if (text.charCodeAt(i) !== 0x7b /* { */) return undefined
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return undefined
  }
  return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined
}

/**
 * An own key of the object as text: strings as they are, finite numbers in JSON form.
 * Anything else (missing, boolean, null, object, array) is undefined. `Object.hasOwn` keeps
 * `constructor` / `__proto__` from resolving to inherited members.
 */
export function scalarField(obj: Record<string, unknown>, key: string): string | undefined {
  if (!Object.hasOwn(obj, key)) return undefined
  const v = obj[key]
  if (typeof v === 'string') return v
  if (typeof v === 'number' && Number.isFinite(v)) return String(v)
  return undefined
}

function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d
}
