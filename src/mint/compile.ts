import { isIP } from 'node:net'
import type { CompiledCredential } from '../config/load.ts'
import type { CredentialConfig } from '../config/schema.ts'
import type { ConfigIssue } from '../errors.ts'
import type { CompiledInjector } from '../inject/render.ts'
import { parseJsonObject, scalarField } from '../providers/secret-fields.ts'
import { LatchkeyError } from '../errors.ts'
import { MINT_TYPES, type MintInjectConfig } from './schema.ts'

/** A minted credential as compiled at load. */
export interface MintSpec {
  readonly kind: MintInjectConfig['type']
  readonly options: Readonly<MintInjectConfig>
  /** oauth2: the parsed token endpoint. */
  readonly tokenUrl: URL | undefined
  /**
   * The stored secret the token is minted from (client secret, private key, service-account
   * key), cached like any secret under its own key so it is refreshed and scrubbed too.
   * Undefined: the pod's own identity (ADC, DefaultAzureCredential).
   */
  readonly source: CompiledCredential | undefined
}

/**
 * Checks that need more than one field and compiles a minted credential. Returns undefined for
 * a credential that mints nothing, null when it has problems (pushed to `issues`).
 */
export function compileMint(name: string, c: CredentialConfig, defaultTtlMs: number, issues: ConfigIssue[]): MintSpec | undefined | null {
  const at = `credentials.${name}`
  const bad = (path: string, message: string): null => {
    issues.push({ path: `${at}${path}`, message })
    return null
  }
  const hasSource = c.provider !== undefined && c.ref !== undefined
  if (!MINT_TYPES.has(c.inject.type)) {
    if (c.provider === undefined) return bad('.provider', 'provider is required')
    if (c.ref === undefined) return bad('.ref', 'ref is required')
    return undefined
  }
  const options = c.inject as MintInjectConfig
  if ((c.provider === undefined) !== (c.ref === undefined)) return bad(c.provider === undefined ? '.provider' : '.ref', 'provider and ref name the stored secret together: set both or neither')
  if (options.type === 'aws-sigv4') {
    if (c.field !== undefined) return bad('.field', 'aws-sigv4 reads the whole secret as JSON keys (accessKeyId, secretAccessKey, sessionToken); remove field')
    // Stored keys are cached like any secret; only the sidecar's own identity goes through a minter.
    if (hasSource) return undefined
  }
  let tokenUrl: URL | undefined
  if (options.type === 'oauth2') {
    if (!hasSource) return bad('.provider', `oauth2 needs provider and ref naming the ${options.auth === 'private_key_jwt' ? 'private key' : 'client secret'}`)
    const u = checkEndpoint(options.tokenUrl, options.insecure)
    if (typeof u === 'string') return bad('.inject.tokenUrl', u)
    tokenUrl = u
  } else if (options.type === 'azure-access-token') {
    if (hasSource && (options.tenantId === undefined || options.clientId === undefined)) return bad('.inject', 'azure-access-token with a client secret (provider, ref) needs tenantId and clientId')
    if (options.authorityHost !== undefined) {
      const u = checkEndpoint(options.authorityHost, false)
      if (typeof u === 'string') return bad('.inject.authorityHost', u)
    }
  }
  const source: CompiledCredential | undefined = hasSource
    ? Object.freeze({
        name: `${name} (secret)`,
        provider: c.provider as string,
        ref: c.ref as string,
        field: c.field,
        version: c.version,
        patterns: Object.freeze([]),
        injector: new SourceInjector(name, c.field),
        ttlMs: c.ttl ?? defaultTtlMs,
        insecure: false,
        prefetch: false,
        scrubResponses: false,
        rules: undefined,
        requireProxyAuth: false,
        cacheKey: ['mint-source', c.provider, c.ref, c.field ?? '', c.version ?? ''].join('\u0000'),
      })
    : undefined
  return Object.freeze({ kind: options.type, options: Object.freeze(options), tokenUrl, source })
}

/** https, or http on a loopback address when `insecure`; no userinfo, query or fragment. */
function checkEndpoint(raw: string, insecure: boolean): URL | string {
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    return `not an absolute URL: ${JSON.stringify(raw.slice(0, 200))}`
  }
  if (u.username || u.password) return 'the URL must not contain userinfo'
  if (u.hash) return 'the URL must not contain a fragment'
  if (u.protocol === 'https:') return u
  if (u.protocol !== 'http:') return 'the URL must be https://'
  const host = u.hostname.replace(/^\[|\]$/g, '')
  const loopback = host === 'localhost' || (isIP(host) === 4 && host.startsWith('127.')) || host === '::1'
  if (!insecure || !loopback) return 'the URL must be https:// (http:// only on a loopback address with insecure: true)'
  return u
}

/**
 * The stored secret as the minter reads it: the whole value or its `field`, unchanged (a PEM
 * key keeps its line breaks: it is never a header). Its scrub forms add a PEM key's base64 body
 * on one line and each of its lines, so a log that quotes a piece of the key is scrubbed too.
 */
class SourceInjector implements CompiledInjector {
  readonly headerName = ''
  readonly overwrite = false
  readonly #credential: string
  readonly #field: string | undefined

  constructor(credential: string, field: string | undefined) {
    this.#credential = credential
    this.#field = field
  }

  render(secretText: string): string {
    if (this.#field === undefined) {
      if (secretText === '') throw new LatchkeyError('invalid_secret', `credential ${this.#credential}: the secret is empty`)
      return secretText
    }
    const obj = parseJsonObject(secretText)
    const v = obj === undefined ? undefined : scalarField(obj, this.#field)
    if (v === undefined || v === '') throw new LatchkeyError('invalid_secret', `credential ${this.#credential}: field ${JSON.stringify(this.#field)} is missing from the secret, empty, or not a string`)
    return v
  }

  secretForms(secretText: string): string[] {
    let v: string
    try {
      v = this.render(secretText)
    } catch {
      return []
    }
    return [v, ...pemForms(v), ...jsonKeyForms(v)]
  }
}

/** The base64 body of every PEM block, joined and line by line. */
export function pemForms(text: string): string[] {
  const out: string[] = []
  for (const m of text.matchAll(/-----BEGIN [A-Z0-9 ]+-----([\s\S]*?)-----END [A-Z0-9 ]+-----/g)) {
    const lines = (m[1] ?? '').split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0)
    out.push(lines.join(''), ...lines)
  }
  return out
}

/** A service-account key JSON: its private key (PEM with real line breaks) and that key's forms. */
function jsonKeyForms(text: string): string[] {
  const obj = parseJsonObject(text)
  const key = obj === undefined ? undefined : scalarField(obj, 'private_key')
  return key === undefined ? [] : [key, ...pemForms(key)]
}
