import { inspect } from 'node:util'
import { secretForms, type SecretForm } from './secret-forms.ts'

const REDACTED = '[REDACTED]'

/** Values shorter than this are not registered: they would turn ordinary words into `[REDACTED]`. */
export const DEFAULT_MIN_LENGTH = 4

export interface ScrubberOptions {
  /** Values shorter than this many UTF-16 code units are not registered (default 4). */
  minLength?: number
}

interface Generations {
  /** Values registered by the latest `set`. */
  current: readonly string[]
  /** Values of the set before; kept so lines about to be written with the old value are still scrubbed. */
  previous: readonly string[]
  /** Set by `retire`: forgets the key when it fires, unless a `set` came first. */
  retiredTimer: NodeJS.Timeout | undefined
}

/** `user:pass` (no quotes, braces or slashes in the user part): its password alone is also secret. */
const USER_PASS = /^[^:\s"{}/\\@]+:(.+)$/s

/** Regex metacharacters (and `-` and `/`, harmless but kept escaped for clarity). */
const SPECIAL = /[.*+?^${}()|[\]\\/-]/g

function literalSource(form: SecretForm): string {
  const escaped = form.text.replace(SPECIAL, '\\$&')
  if (!form.caseInsensitiveHex) return escaped
  // Encoders disagree on the case of percent-escapes (`%2F` vs `%2f`); accept both.
  return escaped.replace(/%([0-9A-F])([0-9A-F])/g, (_m, a: string, b: string) => '%' + hexClass(a) + hexClass(b))
}

function hexClass(c: string): string {
  return /[A-F]/.test(c) ? `[${c}${c.toLowerCase()}]` : c
}

function sameValues(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false
  const set = new Set(a)
  return b.every((v) => set.has(v))
}

/**
 * Replaces every secret value currently held (and its derived forms) with `[REDACTED]`.
 *
 * Compiled like pino's redactors: all forms of all held values are joined, longest
 * first, into ONE RegExp. It is rebuilt lazily, on the first `scrub` after the set
 * changed, so a burst of `set` calls at start-up costs one compilation; a line without
 * a secret costs one regex scan.
 *
 * The held values never leave the instance: `util.inspect` and `JSON.stringify` show
 * only the count.
 */
export class Scrubber {
  readonly #minLength: number
  readonly #keys = new Map<string, Generations>()
  #pattern: RegExp | undefined
  /** Length of the shortest form in the pattern: a shorter text cannot hold a match. */
  #shortest = 0
  #dirty = false
  #size = 0

  constructor(opts: ScrubberOptions = {}) {
    this.#minLength = Math.max(1, opts.minLength ?? DEFAULT_MIN_LENGTH)
  }

  /**
   * Register the values for one cache key (e.g. a credential name). Replaces that key's
   * values; the previous generation of that key stays scrubbed until the next `set`
   * (in-flight log lines may still mention the old value). Setting the same values again
   * changes nothing (a refresh that returned the same secret does not age the previous one out).
   *
   * For every value it also registers its base64, base64url, URL-encoded (both styles),
   * JSON-escaped forms, and for a `user:pass` value the password on its own. Values shorter
   * than `minLength` are not registered; their count is returned so the caller can warn
   * (without the value).
   */
  set(key: string, values: readonly string[]): { skippedShort: number } {
    let skippedShort = 0
    const accepted: string[] = []
    for (const v of new Set(values)) {
      if (v.length < this.#minLength) {
        skippedShort++
        continue
      }
      accepted.push(v)
      const pass = USER_PASS.exec(v)?.[1]
      if (pass !== undefined && pass.length >= this.#minLength) accepted.push(pass)
    }
    const held = this.#keys.get(key)
    if (held !== undefined) clearTimeout(held.retiredTimer)
    if (held !== undefined && sameValues(held.current, accepted)) {
      held.retiredTimer = undefined
      return { skippedShort }
    }
    this.#keys.set(key, { current: accepted, previous: held?.current ?? [], retiredTimer: undefined })
    this.#changed()
    return { skippedShort }
  }

  /**
   * The cache no longer holds this key's value (evicted, cleared, refetch failed), but log
   * lines of requests still in flight may mention it: keep both generations scrubbed for
   * `ms` more, then forget them. A `set` of the key before then cancels that (the retired
   * value becomes the previous generation, as in a rotation). Retiring a key already
   * retiring keeps the first deadline; an unknown key is a no-op.
   */
  retire(key: string, ms: number): void {
    const held = this.#keys.get(key)
    if (held === undefined || held.retiredTimer !== undefined) return
    const timer = setTimeout(() => {
      if (this.#keys.get(key) === held && held.retiredTimer === timer) this.delete(key)
    }, ms)
    timer.unref()
    held.retiredTimer = timer
  }

  /** Forget both generations of one key now. */
  delete(key: string): void {
    const held = this.#keys.get(key)
    if (held === undefined) return
    clearTimeout(held.retiredTimer)
    this.#keys.delete(key)
    this.#changed()
  }

  /** Forget everything. */
  clear(): void {
    if (this.#keys.size === 0) return
    for (const held of this.#keys.values()) clearTimeout(held.retiredTimer)
    this.#keys.clear()
    this.#changed()
  }

  /** Number of distinct values held (both generations, all keys; derived forms not counted). */
  get size(): number {
    if (this.#dirty) this.#compile()
    return this.#size
  }

  /** `text` with every held value, in any of its forms, replaced by `[REDACTED]`. */
  scrub(text: string): string {
    if (this.#dirty) this.#compile()
    const pattern = this.#pattern
    if (pattern === undefined || text.length < this.#shortest) return text
    pattern.lastIndex = 0
    return text.replace(pattern, replaceKeepingJson)
  }

  toJSON(): { size: number } {
    return { size: this.size }
  }

  [inspect.custom](): string {
    return `Scrubber { size: ${this.size} }`
  }

  #changed(): void {
    this.#dirty = true
  }

  #compile(): void {
    this.#dirty = false
    const values = new Set<string>()
    for (const g of this.#keys.values()) {
      for (const v of g.current) values.add(v)
      for (const v of g.previous) values.add(v)
    }
    this.#size = values.size
    if (values.size === 0) {
      this.#pattern = undefined
      return
    }
    const sources = new Map<string, number>()
    for (const v of values) {
      for (const form of secretForms(v)) {
        if (form.text.length < this.#minLength) continue
        const src = literalSource(form)
        sources.set(src, Math.max(sources.get(src) ?? 0, form.text.length))
      }
    }
    // Longest first: at a given position the alternation takes the first alternative that
    // matches, so a form that extends another (base64 padded vs unpadded, JSON-escaped vs
    // raw) must be tried before it or its tail would be left in the line.
    const bySize = [...sources].sort((a, b) => b[1] - a[1])
    this.#shortest = bySize.at(-1)?.[1] ?? 0
    this.#pattern = new RegExp(bySize.map(([src]) => src).join('|'), 'g')
  }
}

/**
 * The replacement keeps a JSON line valid when a match starts or ends inside an escape
 * sequence (a value that begins with `n` right after `\`, or ends with a literal `\`):
 * a backslash left unpaired by the cut is paired with an added one.
 */
function replaceKeepingJson(match: string, offset: number, text: string): string {
  let before = 0
  for (let i = offset - 1; i >= 0 && text.charCodeAt(i) === 0x5c; i--) before++
  let after = 0
  for (let i = match.length - 1; i >= 0 && match.charCodeAt(i) === 0x5c; i--) after++
  return (before % 2 === 1 ? '\\' : '') + REDACTED + (after % 2 === 1 && after < match.length ? '\\' : '')
}
