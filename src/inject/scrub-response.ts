/**
 * Scrubbing the injected credential out of responses. An upstream that echoes request headers
 * (an echo service, a debug endpoint, an error page) would otherwise hand the application the
 * very value latchkey exists to keep from it.
 *
 * - Headers, trailers and the status text: always, for every response to an injected request.
 * - Bodies: when the credential says `scrubResponses: true`; streamed, a match split across
 *   chunks is still found (the last `longest form - 1` bytes of a chunk wait for the next).
 *
 * Every form of the injected value (the rendered header value and the secret parts it holds,
 * each raw, base64, URL- and JSON-encoded: `secretForms`) is overwritten byte for byte with
 * `*`. The length never changes, so `Content-Length` stays exact. A compressed body (gzip,
 * deflate, br, zstd) is decoded by undici's decompress handler and sent on identity-encoded
 * (without `Content-Encoding` and `Content-Length`); a body in any other encoding cannot be
 * searched and the response fails (502 `upstream_error`) instead of passing unread.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { Duplex } from 'node:stream'
import { interceptors, type Dispatcher } from 'undici'
import type { Resolved } from '../cache/secret-cache.ts'
import type { CompiledCredential } from '../config/load.ts'
import { LatchkeyError } from '../errors.ts'
import type { SecretValue } from '../providers/secret-value.ts'
import { secretForms } from '../redact/secret-forms.ts'

type Controller = Dispatcher.DispatchController
type Handler = Dispatcher.DispatchHandler

/** Forms shorter than this are not scrubbed: they would turn ordinary words into `****` (the log scrubber's bound too). */
const MIN_FORM_LENGTH = 4
const MASK = 0x2a // '*'
const EMPTY = Buffer.alloc(0)
/** Content codings the decompress handler decodes; `identity` needs no decoding. */
const DECODABLE = new Set(['gzip', 'x-gzip', 'deflate', 'br', 'zstd', 'identity'])
const SPECIAL = /[.*+?^${}()|[\]\\/-]/g

/** The compiled forms of one injected value: one RegExp over the bytes (as latin1 text). */
export class ScrubForms {
  readonly pattern: RegExp
  /** Bytes of the longest form: a chunk's last `maxLength - 1` bytes may start a match. */
  readonly maxLength: number
  /** Bytes of the shortest form: a shorter text holds none (most header values). */
  readonly minLength: number

  constructor(values: readonly string[]) {
    const sources = new Map<string, number>()
    for (const value of values) {
      if (value.length < MIN_FORM_LENGTH) continue
      for (const form of secretForms(value)) {
        if (form.text.length < MIN_FORM_LENGTH) continue
        // Bytes on the wire, seen one char per byte: a UTF-8 secret matches its own bytes.
        const bytes = Buffer.from(form.text, 'utf8').toString('latin1')
        let source = bytes.replace(SPECIAL, '\\$&')
        // Encoders disagree on the case of percent-escapes (`%2F` vs `%2f`).
        if (form.caseInsensitiveHex) source = source.replace(/%([0-9A-F])([0-9A-F])/g, (_m, a: string, b: string) => `%${hexClass(a)}${hexClass(b)}`)
        sources.set(source, bytes.length)
      }
    }
    const ordered = [...sources].sort((a, b) => b[1] - a[1])
    // No form at all (every value too short): a pattern that never matches.
    this.pattern = new RegExp(ordered.length > 0 ? ordered.map(([s]) => s).join('|') : '(?!)', 'g')
    this.maxLength = ordered[0]?.[1] ?? 1
    this.minLength = ordered.at(-1)?.[1] ?? Infinity
    Object.freeze(this)
  }

  /** `text` (a header value, latin1) with every form overwritten by `*`. */
  scrubText(text: string): string {
    if (text.length < this.minLength) return text
    this.pattern.lastIndex = 0
    return this.pattern.test(text) ? text.replace(this.pattern, (m) => '*'.repeat(m.length)) : text
  }
}

function hexClass(c: string): string {
  return /[A-F]/.test(c) ? `[${c}${c.toLowerCase()}]` : c
}

const compiled = new WeakMap<SecretValue, Map<string, ScrubForms>>()

/**
 * The forms of what `credential` injected with `resolved`, compiled once per fetched value
 * (kept only as long as the value itself). For `basic`, the username is left alone: it is not
 * secret, and a `whoami` answer may rightly show it; the password and the pair are scrubbed.
 */
export function responseScrubForms(credential: CompiledCredential, resolved: Resolved): ScrubForms {
  let byCredential = compiled.get(resolved.secret)
  if (byCredential === undefined) {
    byCredential = new Map()
    compiled.set(resolved.secret, byCredential)
  }
  let forms = byCredential.get(credential.name)
  if (forms === undefined) {
    const values = new Set([resolved.headerValue, ...credential.injector.secretForms(resolved.secret.reveal())])
    if (resolved.headerValue.startsWith('Basic ')) {
      const pair = Buffer.from(resolved.headerValue.slice(6), 'base64').toString('utf8')
      const username = pair.slice(0, pair.indexOf(':'))
      if (username !== pair.slice(username.length + 1)) values.delete(username)
    }
    forms = new ScrubForms([...values])
    byCredential.set(credential.name, forms)
  }
  return forms
}

/**
 * A stream of body bytes with every form overwritten. `push` hands on, in order, the pieces
 * that can be sent now; up to `maxLength - 1` bytes wait for the next chunk, since a form may
 * begin there; `end` hands on the rest. Nothing is copied but that held tail: the pieces are
 * slices of the upstream's chunks and of one shared run of `*`.
 */
export class BodyScrubber {
  readonly #forms: ScrubForms
  /** Bytes a form may still begin in: `maxLength - 1`. */
  readonly #hold: number
  readonly #mask: Buffer
  #carry: Buffer = EMPTY

  constructor(forms: ScrubForms) {
    this.#forms = forms
    this.#hold = forms.maxLength - 1
    this.#mask = Buffer.alloc(forms.maxLength, MASK)
  }

  push(chunk: Buffer, emit: (piece: Buffer) => void): void {
    const carry = this.#carry
    if (carry.length === 0 || chunk.length < this.#hold) {
      // Small chunks are joined whole (cheap); otherwise the chunk is scanned as it is.
      this.#tail(carry.length === 0 ? chunk : Buffer.concat([carry, chunk]), 0, emit)
      return
    }
    // The junction: the held tail and the next `hold` bytes. A form beginning in the tail ends
    // inside it, so the matches found there are final. One that runs into the chunk covers
    // the chunk's first bytes (emitted masked here).
    const end = this.#scrub(Buffer.concat([carry, chunk.subarray(0, this.#hold)]), 0, carry.length, emit)
    this.#tail(chunk, end - carry.length, emit)
  }

  end(emit: (piece: Buffer) => void): void {
    const buf = this.#carry
    this.#carry = EMPTY
    if (buf.length > 0) this.#scrub(buf, 0, buf.length, emit)
  }

  /** Emits what is final in `buf` from `from` on, and holds the rest. */
  #tail(buf: Buffer, from: number, emit: (piece: Buffer) => void): void {
    // A match starting before `boundary` is final: every form starting there fits in `buf`.
    const boundary = buf.length - this.#hold
    const end = boundary <= from ? from : this.#scrub(buf, from, boundary, emit)
    // Copied: the held tail must not pin (or alias) the upstream's buffer.
    this.#carry = end === buf.length ? EMPTY : Buffer.from(buf.subarray(end))
  }

  /**
   * Emits `buf` from `from` to the returned end (at least `boundary`), every match that starts
   * before `boundary` replaced by `*`s; a match may end past `boundary`.
   */
  #scrub(buf: Buffer, from: number, boundary: number, emit: (piece: Buffer) => void): number {
    const pattern = this.#forms.pattern
    const text = buf.toString('latin1')
    pattern.lastIndex = from
    let at = from
    for (let m = pattern.exec(text); m !== null && m.index < boundary; m = pattern.exec(text)) {
      if (m.index > at) emit(buf.subarray(at, m.index))
      emit(this.#mask.subarray(0, m[0].length))
      at = m.index + m[0].length
    }
    const end = Math.max(at, boundary)
    if (end > at) emit(buf.subarray(at, end))
    return end
  }
}

/** Header values with every form masked; the same object when nothing matched. */
function scrubHeaders(headers: IncomingHttpHeaders, forms: ScrubForms): IncomingHttpHeaders {
  let out: IncomingHttpHeaders | undefined
  // for-in: no [name, value] array per header on the response path.
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined || (typeof value === 'string' && value.length < forms.minLength)) continue
    const scrubbed = Array.isArray(value) ? value.map((v) => forms.scrubText(v)) : forms.scrubText(value)
    if (Array.isArray(value) ? value.some((v, i) => v !== (scrubbed as string[])[i]) : value !== scrubbed) {
      out ??= { ...headers }
      out[name] = scrubbed
    }
  }
  return out ?? headers
}

/** The controller's raw header list (read by handlers that keep header case) masked in place. */
function scrubRaw(raw: Controller['rawHeaders'], forms: ScrubForms): void {
  if (!Array.isArray(raw)) return
  for (let i = 1; i < raw.length; i += 2) {
    const v = raw[i]
    // Too short to hold a form: not decoded (a Buffer's length is its latin1 text's length).
    if (v === undefined || v.length < forms.minLength) continue
    const text = typeof v === 'string' ? v : (v as Buffer).toString('latin1')
    const scrubbed = forms.scrubText(text)
    if (scrubbed !== text) raw[i] = typeof v === 'string' ? scrubbed : Buffer.from(scrubbed, 'latin1')
  }
}

function encodings(headers: IncomingHttpHeaders): string[] {
  const raw = headers['content-encoding']
  const text = Array.isArray(raw) ? raw.join(',') : (raw ?? '')
  return text.split(',').map((e) => e.trim().toLowerCase()).filter((e) => e !== '')
}

/** Scrubs headers, status text and trailers; in front of the body chain when bodies are scrubbed too. */
class HeaderScrub implements Handler {
  readonly #next: Handler
  readonly #forms: ScrubForms
  readonly #bodies: boolean

  constructor(next: Handler, forms: ScrubForms, bodies: boolean) {
    this.#next = next
    this.#forms = forms
    this.#bodies = bodies
  }

  onRequestStart(controller: Controller, context: unknown): void {
    this.#next.onRequestStart?.(controller, context)
  }

  onRequestUpgrade(controller: Controller, statusCode: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    scrubRaw(controller.rawHeaders, this.#forms)
    this.#next.onRequestUpgrade?.(controller, statusCode, scrubHeaders(headers, this.#forms), socket)
  }

  onResponseStart(controller: Controller, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (this.#bodies && statusCode >= 200 && statusCode !== 204 && statusCode !== 304) {
      const unknown = encodings(headers).find((e) => !DECODABLE.has(e))
      if (unknown !== undefined) {
        controller.abort(new LatchkeyError('upstream_error', `the upstream's response body is in Content-Encoding ${JSON.stringify(unknown.slice(0, 32))}, which latchkey cannot decode to scrub the credential from it (scrubResponses)`))
        return
      }
    }
    scrubRaw(controller.rawHeaders, this.#forms)
    this.#next.onResponseStart?.(controller, statusCode, scrubHeaders(headers, this.#forms), statusMessage === undefined ? undefined : this.#forms.scrubText(statusMessage))
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    this.#next.onResponseData?.(controller, chunk)
  }

  onResponseEnd(controller: Controller, trailers: IncomingHttpHeaders): void {
    scrubRaw(controller.rawTrailers, this.#forms)
    this.#next.onResponseEnd?.(controller, trailers ? scrubHeaders(trailers, this.#forms) : trailers)
  }

  onResponseError(controller: Controller, err: Error): void {
    this.#next.onResponseError?.(controller, err)
  }
}

/** Scrubs the (decoded) body bytes on their way to the application. */
class BodyScrub implements Handler {
  readonly #next: Handler
  readonly #scrubber: BodyScrubber

  constructor(next: Handler, forms: ScrubForms) {
    this.#next = next
    this.#scrubber = new BodyScrubber(forms)
  }

  onRequestStart(controller: Controller, context: unknown): void {
    this.#next.onRequestStart?.(controller, context)
  }

  onRequestUpgrade(controller: Controller, statusCode: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    this.#next.onRequestUpgrade?.(controller, statusCode, headers, socket)
  }

  onResponseStart(controller: Controller, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    this.#next.onResponseStart?.(controller, statusCode, headers, statusMessage)
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    this.#scrubber.push(chunk, (piece) => {
      if (piece.length > 0) this.#next.onResponseData?.(controller, piece)
    })
  }

  onResponseEnd(controller: Controller, trailers: IncomingHttpHeaders): void {
    this.#scrubber.end((piece) => this.#next.onResponseData?.(controller, piece))
    this.#next.onResponseEnd?.(controller, trailers)
  }

  onResponseError(controller: Controller, err: Error): void {
    this.#next.onResponseError?.(controller, err)
  }
}

let decompress: Dispatcher.DispatcherComposeInterceptor | undefined

/** undici's decompress handler around `handler` (made through its interceptor, the only way it is exported). */
function decoding(handler: Handler): Handler {
  // Error pages are decoded too: they echo headers as readily as anything else.
  decompress ??= interceptors.decompress({ skipErrorResponses: false })
  let wrapped: Handler = handler
  const capture: Dispatcher.Dispatch = (_opts, h) => {
    wrapped = h
    return true
  }
  decompress(capture)({ method: 'GET', path: '/', origin: 'http://scrub.invalid' }, handler)
  return wrapped
}

export interface ScrubOptions {
  /** Scrub bodies too (`scrubResponses: true`); headers, trailers and status text always. */
  readonly bodies: boolean
  /** The request's method: a HEAD response has no body to decode. */
  readonly method: string
}

/**
 * Wraps the handler that receives the upstream's response so the injected value never reaches
 * it. The one call the request path makes after injection, per dispatch.
 */
export function scrubbingHandler(handler: Handler, forms: ScrubForms, o: ScrubOptions): Handler {
  if (!o.bodies) return new HeaderScrub(handler, forms, false)
  const body = new BodyScrub(handler, forms)
  return new HeaderScrub(o.method === 'HEAD' ? body : decoding(body), forms, true)
}
