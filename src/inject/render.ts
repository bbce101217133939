/**
 * Injection: how a secret becomes one request header. Everything that can be decided from
 * the config (header name, template shape) is checked and compiled once at load; `render`
 * runs once per fetched value (the cache keeps its result), so a request never re-renders.
 *
 * Nothing thrown here holds the secret: messages name the credential, the field or JSON key
 * (config, not secret) and what is wrong, never the value or a part of it.
 */
import { LatchkeyError } from '../errors.ts'
import { parseJsonObject, scalarField } from '../providers/secret-fields.ts'

export type InjectSpec =
  | { type: 'bearer'; overwrite: boolean }
  | { type: 'basic'; overwrite: boolean }
  | { type: 'header'; header: string; value: string /* template, default '{value}' */; overwrite: boolean }

export interface CompiledInjector {
  /** Lowercase header name. */
  readonly headerName: string
  /** Replace a client-sent header of the same name (true) or keep the client's (false). */
  readonly overwrite: boolean
  /**
   * Render the header value from the secret text. Throws LatchkeyError('header_value_invalid') when the
   * rendered value (or a basic username/password) holds CR, LF, NUL or another character that cannot be
   * sent in a header; LatchkeyError('invalid_secret') when `field` is missing / not a string-or-number, the
   * secret is not JSON where JSON is needed, or `basic` gets neither {username,password} JSON nor `user:pass`.
   */
  render(secretText: string): string
  /**
   * Every string the render step derives that must also be scrubbed from logs (field value, username,
   * password, `user:pass`, its base64, JSON values used, the rendered header value). Best effort: never throws.
   */
  secretForms(secretText: string): string[]
}

/** RFC 9110 token. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** Headers that frame or route the message: a secret there would enable smuggling or misrouting (T9). */
const RESERVED_HEADERS = new Set([
  'host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'te', 'trailer', 'upgrade',
  'proxy-authorization', 'proxy-authenticate', 'proxy-connection', 'expect',
])

/**
 * What would make a string unsendable as a header value: CR, LF or NUL split or truncate the
 * header (T9); other controls (but HTAB) and DEL are forbidden by RFC 9110; and anything above
 * Latin-1 has no byte form. A char-code loop: no regex with control characters, no allocation.
 */
function headerProblem(s: string): 'split' | 'control' | 'wide' | undefined {
  let found: 'control' | 'wide' | undefined
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 0x0d || c === 0x0a || c === 0x00) return 'split'
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) found = 'control'
    else if (c > 0xff && found === undefined) found = 'wide'
  }
  return found
}

type InjectorKind = InjectSpec['type']

type Part = { kind: 'text'; text: string } | { kind: 'value' } | { kind: 'json'; key: string }

/** A template broken into literal text and placeholders; `{{` and `}}` are literal braces. */
export function parseTemplate(template: string): Part[] {
  const parts: Part[] = []
  let text = ''
  for (let i = 0; i < template.length; i++) {
    const ch = template[i] as string
    if (ch === '{') {
      if (template[i + 1] === '{') {
        text += '{'
        i++
        continue
      }
      const close = template.indexOf('}', i + 1)
      if (close === -1) throw new Error('the value template has an unclosed "{"; placeholders are {value} and {json.KEY}, and {{ is a literal "{"')
      const name = template.slice(i + 1, close)
      if (text) parts.push({ kind: 'text', text })
      text = ''
      if (name === 'value') parts.push({ kind: 'value' })
      else if (name.startsWith('json.') && name.length > 'json.'.length) parts.push({ kind: 'json', key: name.slice('json.'.length) })
      else if (name === 'json.') throw new Error('the placeholder {json.} needs a key, e.g. {json.token}')
      else throw new Error(`unknown placeholder {${name.slice(0, 40)}} in the value template; use {value} or {json.KEY} (write {{ for a literal "{")`)
      i = close
    } else if (ch === '}') {
      if (template[i + 1] !== '}') throw new Error('the value template has a lone "}"; write }} for a literal "}"')
      text += '}'
      i++
    } else {
      text += ch
    }
  }
  if (text) parts.push({ kind: 'text', text })
  return parts
}

/** Compile once at load. Throws an Error whose message explains the template / header-name problem. */
export function compileInjector(credentialName: string, spec: InjectSpec, field: string | undefined): CompiledInjector {
  switch (spec.type) {
    case 'bearer':
      return new Injector(credentialName, 'authorization', 'Authorization', spec.overwrite, field, 'bearer', [{ kind: 'text', text: 'Bearer ' }, { kind: 'value' }])
    case 'basic':
      return new Injector(credentialName, 'authorization', 'Authorization', spec.overwrite, field, 'basic', [])
    case 'header': {
      const header = spec.header
      if (!TOKEN.test(header)) throw new Error(`header name ${JSON.stringify(header.slice(0, 64))} is not a valid HTTP field name (letters, digits and !#$%&'*+.^_\`|~- only)`)
      const lower = header.toLowerCase()
      if (RESERVED_HEADERS.has(lower)) throw new Error(`header ${header} cannot carry a credential: it frames or routes the message`)
      const parts = parseTemplate(spec.value ?? '{value}')
      if (!parts.some((p) => p.kind !== 'text')) throw new Error('the value template has no placeholder, so it would inject no secret; use {value} or {json.KEY}')
      for (const p of parts) {
        if (p.kind === 'text' && headerProblem(p.text) !== undefined) {
          throw new Error('the value template holds CR, LF, NUL or another character that cannot be sent in a header')
        }
      }
      return new Injector(credentialName, lower, header, spec.overwrite, field, 'header', parts)
    }
    default: {
      const never: never = spec
      throw new Error(`unknown inject type ${JSON.stringify((never as { type: unknown }).type)}`)
    }
  }
}

/** The secret as parsed for one render: the JSON object is parsed at most once. */
interface Source {
  readonly text: string
  json: Record<string, unknown> | undefined | null // null: not parsed yet
}

class Injector implements CompiledInjector {
  readonly headerName: string
  readonly overwrite: boolean
  readonly #credential: string
  readonly #displayHeader: string
  readonly #field: string | undefined
  readonly #kind: InjectorKind
  readonly #parts: readonly Part[]

  constructor(credential: string, headerName: string, displayHeader: string, overwrite: boolean, field: string | undefined, kind: InjectorKind, parts: Part[]) {
    this.headerName = headerName
    this.overwrite = overwrite
    this.#credential = credential
    this.#displayHeader = displayHeader
    this.#field = field
    this.#kind = kind
    this.#parts = Object.freeze(parts)
    Object.freeze(this)
  }

  render(secretText: string): string {
    return this.#derive(secretText, undefined)
  }

  secretForms(secretText: string): string[] {
    const forms: string[] = []
    try {
      forms.push(this.#derive(secretText, forms))
    } catch {
      // Whatever was derived before the failure is still scrubbed.
    }
    return [...new Set(forms.filter((f) => f.length > 0))]
  }

  /** Render, pushing every derived secret string into `collect` when given. */
  #derive(text: string, collect: string[] | undefined): string {
    const src: Source = { text, json: null }
    let rendered: string
    if (this.#kind === 'basic') {
      rendered = 'Basic ' + this.#basic(src, collect)
    } else {
      rendered = ''
      for (const p of this.#parts) {
        if (p.kind === 'text') rendered += p.text
        else {
          const v = p.kind === 'value' ? this.#value(src) : this.#jsonKey(src, p.key)
          collect?.push(v)
          rendered += v
        }
      }
    }
    const problem = headerProblem(rendered)
    if (problem === 'split') {
      throw new LatchkeyError('header_value_invalid', `credential ${this.#credential}: the rendered ${this.#displayHeader} value contains CR, LF or NUL; it is never sent`)
    }
    if (problem !== undefined) {
      throw new LatchkeyError('header_value_invalid', `credential ${this.#credential}: the rendered ${this.#displayHeader} value contains ${problem === 'control' ? 'a control character' : 'a character outside Latin-1'}, which cannot be sent in a header`)
    }
    return rendered
  }

  /** `{value}`: the whole secret, or its `field`. */
  #value(src: Source): string {
    const field = this.#field
    const v = field === undefined ? src.text : this.#selectField(src, field)
    if (v.length === 0) throw this.#invalid(field === undefined ? 'the secret is empty' : `field ${JSON.stringify(field)} is empty`)
    return v
  }

  #selectField(src: Source, field: string): string {
    const obj = this.#json(src, `field ${JSON.stringify(field)} is set but the secret is not a JSON object`)
    const v = scalarField(obj, field)
    if (v === undefined) throw this.#invalid(`field ${JSON.stringify(field)} is missing from the secret or is not a string or number`)
    return v
  }

  #jsonKey(src: Source, key: string): string {
    const obj = this.#json(src, `the template uses {json.${key}} but the secret is not a JSON object`)
    const v = scalarField(obj, key)
    if (v === undefined) throw this.#invalid(`JSON key ${JSON.stringify(key)} (used by the template) is missing from the secret or is not a string or number`)
    if (v.length === 0) throw this.#invalid(`JSON key ${JSON.stringify(key)} is empty`)
    return v
  }

  #json(src: Source, why: string): Record<string, unknown> {
    if (src.json === null) src.json = parseJsonObject(src.text)
    if (src.json === undefined) throw this.#invalid(why)
    return src.json
  }

  /** base64(username:password) from `field` (`user:pass`), JSON {username, password}, or a plain `user:pass`. */
  #basic(src: Source, collect: string[] | undefined): string {
    let username: string
    let password: string
    const obj = this.#field === undefined ? parseJsonObject(src.text) : undefined
    if (obj !== undefined) {
      const u = scalarField(obj, 'username')
      const p = scalarField(obj, 'password')
      if (u === undefined || p === undefined) throw this.#invalid('basic needs a JSON secret with string "username" and "password", or a user:pass string')
      if (u.includes(':')) throw this.#invalid('the basic username contains ":", which RFC 7617 does not allow')
      username = u
      password = p
    } else {
      const pair = this.#field === undefined ? src.text : this.#selectField(src, this.#field)
      const colon = pair.indexOf(':')
      if (colon === -1) {
        throw this.#invalid(this.#field === undefined
          ? 'basic needs a JSON secret with "username" and "password", or a user:pass string, and the secret is neither'
          : `basic with field ${JSON.stringify(this.#field)} needs that field to hold user:pass`)
      }
      username = pair.slice(0, colon)
      password = pair.slice(colon + 1)
    }
    if (username.length === 0 && password.length === 0) throw this.#invalid('basic username and password are both empty')
    const pair = `${username}:${password}`
    if (collect) collect.push(username, password, pair)
    // base64 would hide them, but a username or password with CR/LF/NUL or controls is malformed (RFC 7617).
    const problem = headerProblem(pair)
    if (problem === 'split') {
      throw new LatchkeyError('header_value_invalid', `credential ${this.#credential}: the basic username or password contains CR, LF or NUL; it is never sent`)
    }
    if (problem === 'control') {
      throw new LatchkeyError('header_value_invalid', `credential ${this.#credential}: the basic username or password contains a control character; it is never sent`)
    }
    // RFC 7617 charset=UTF-8: non-ASCII names are sent as their UTF-8 bytes.
    const token = Buffer.from(pair, 'utf8').toString('base64')
    collect?.push(token)
    return token
  }

  #invalid(why: string): LatchkeyError {
    return new LatchkeyError('invalid_secret', `credential ${this.#credential}: ${why}`)
  }
}
