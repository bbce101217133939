import { AssertionError } from 'node:assert'
import { Writable } from 'node:stream'
import { StringDecoder } from 'node:string_decoder'

export interface LogCapture {
  /** Give this to a logger (or `startDaemon({ logStream })`). */
  stream: Writable
  /** Every line written so far (a trailing line without `\n` included), without the newline. */
  lines(): string[]
  /** Every line parsed as JSON; throws naming the line index (not its content) if one is not JSON. */
  records(): Array<Record<string, unknown>>
  /** Everything written so far, as one string. */
  text(): string
  /** Forget what was captured (the stream stays usable). */
  clear(): void
}

/**
 * A sink that keeps everything written to it, like pino's `test/helper.js` sink. Writes are
 * synchronous, so after `logger.info(...)` returns the line is already in `lines()`.
 * Chunks may be strings or Buffers and may split lines (or UTF-8 characters) anywhere.
 */
export function captureLogs(): LogCapture {
  let text = ''
  let decoder = new StringDecoder('utf8')
  const stream = new Writable({
    decodeStrings: false,
    write(chunk: unknown, _encoding, callback) {
      text += typeof chunk === 'string' ? chunk : decoder.write(chunk as Buffer)
      callback()
    },
  })
  const lines = (): string[] => {
    const all = text.split('\n')
    if (all[all.length - 1] === '') all.pop()
    return all
  }
  return {
    stream,
    lines,
    records() {
      return lines().map((line, i) => {
        try {
          const parsed: unknown = JSON.parse(line)
          if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new TypeError('not an object')
          return parsed as Record<string, unknown>
        } catch {
          // The line itself is not printed: it may hold the very secret a test is looking for.
          throw new Error(`captured log line #${i} (${line.length} chars) is not a JSON object`)
        }
      })
    },
    text: () => text,
    clear() {
      text = ''
      decoder = new StringDecoder('utf8')
    },
  }
}

export type Canary = string | { username: string; password: string }

interface Needle {
  canary: number
  kind: string
  text: string
  /** Percent-encodings are compared case-insensitively (`%2F` = `%2f`). */
  caseInsensitive: boolean
}

/**
 * Every encoding of `text` to look for, computed here rather than with the Scrubber's
 * `secretForms`, so a mistake there cannot hide itself in the tests that check it.
 * URL-encoded forms are matched case-insensitively: only their `%XX` escapes vary in case,
 * and a canary is distinctive enough that folding its letters too cannot cause a false alarm.
 */
function needlesFor(text: string, canary: number, label: string): Needle[] {
  const bytes = Buffer.from(text, 'utf8')
  const b64 = bytes.toString('base64')
  const json = JSON.stringify(text).slice(1, -1)
  const forms: Array<[string, string, boolean]> = [
    ['raw', text, false],
    ['json-escaped', json, false],
    ['json-escaped-twice', JSON.stringify(json).slice(1, -1), false],
    ['base64', b64, false],
    ['base64-unpadded', b64.replace(/=+$/, ''), false],
    ['base64url', bytes.toString('base64url'), false],
    ['url-encoded', encodeURIComponent(text), true],
    ['form-encoded', formUrlEncode(text), true],
    ['base64-url-encoded', encodeURIComponent(b64), true],
  ]
  for (const [kind, enc] of [['base64-embedded', 'base64'], ['base64url-embedded', 'base64url']] as const) {
    for (const run of base64Runs(bytes, enc)) forms.push([kind, run, false])
  }
  const seen = new Set<string>()
  const out: Needle[] = []
  for (const [kind, form, caseInsensitive] of forms) {
    const key = caseInsensitive ? form.toLowerCase() : form
    if (form === '' || seen.has(key)) continue
    seen.add(key)
    out.push({ canary, kind: label + kind, text: key, caseInsensitive })
  }
  return out
}

/** WHATWG form encoding: all but ASCII alphanumerics and `*-._` escaped, space as `+`. */
function formUrlEncode(text: string): string {
  return encodeURIComponent(text)
    .replace(/[!'()~]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())
    .replace(/%20/g, '+')
}

/**
 * Inside a longer base64 blob the value starts 0, 1 or 2 bytes into a 3-byte group. For
 * each, the characters whose 6 bits all come from the value are the same whatever
 * surrounds it: those runs (8 characters or more, so ordinary text cannot match) are searched.
 */
function base64Runs(bytes: Buffer, encoding: 'base64' | 'base64url'): string[] {
  const runs: string[] = []
  for (let lead = 0; lead < 3; lead++) {
    const encoded = Buffer.concat([Buffer.alloc(lead, 0x41), bytes]).toString(encoding)
    const firstBit = lead * 8
    const endBit = firstBit + bytes.length * 8
    let run = ''
    for (let k = 0; k * 6 + 6 <= endBit; k++) if (k * 6 >= firstBit) run += encoded[k] ?? ''
    if (run.length >= 8) runs.push(run)
  }
  return runs
}

/**
 * Asserts that none of `outputs` contains any canary in raw, base64 (padded, unpadded, or
 * embedded in a longer base64 blob), base64url, URL-encoded (`encodeURIComponent` and form
 * style, either hex case), JSON-escaped (once or twice) form. For a `{username, password}`
 * canary it checks the password and `username:password` in all those forms (so
 * base64("username:password") as in a Basic header).
 *
 * The failure message says which canary (by index), which form, which output (by index) and
 * at which offset, and never prints the canary or the text around it.
 */
export function assertNoCanary(outputs: string | readonly string[], canaries: ReadonlyArray<Canary>): void {
  const list = typeof outputs === 'string' ? [outputs] : outputs
  const needles: Needle[] = []
  canaries.forEach((c, i) => {
    if (typeof c === 'string') {
      if (c.length === 0) throw new Error(`canary #${i} is empty`)
      needles.push(...needlesFor(c, i, ''))
    } else {
      if (c.password.length === 0) throw new Error(`canary #${i} has an empty password`)
      needles.push(...needlesFor(c.password, i, 'password '))
      needles.push(...needlesFor(`${c.username}:${c.password}`, i, 'username:password '))
    }
  })
  const found: string[] = []
  list.forEach((out, o) => {
    if (typeof out !== 'string') throw new TypeError(`output #${o} is not a string`)
    let lower: string | undefined
    for (const n of needles) {
      const hay = n.caseInsensitive ? (lower ??= out.toLowerCase()) : out
      const at = hay.indexOf(n.text)
      if (at !== -1) found.push(`canary #${n.canary} (${n.kind}) in output #${o} at offset ${at}`)
    }
  })
  if (found.length > 0) {
    const shown = found.slice(0, 20)
    const more = found.length > shown.length ? `\n  ... and ${found.length - shown.length} more` : ''
    throw new AssertionError({ message: `secret canary found in ${found.length} place(s):\n  ${shown.join('\n  ')}${more}` })
  }
}
