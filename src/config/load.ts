import { readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { parseDocument } from 'yaml'
import type { z } from 'zod'
import { ConfigError, type ConfigIssue } from '../errors.ts'
import { compileInjector, type CompiledInjector } from '../inject/render.ts'
import { findOverlaps } from '../binding/credential-matcher.ts'
import { normalizeHost, parseHostPattern, patternMatches, type HostPattern } from '../binding/host-pattern.ts'
import { PROVIDERS } from '../providers/registry.ts'
import { resolveServerLimits, type ServerLimits } from '../proxy/server-limits.ts'
import { compileMint, type MintSpec } from '../mint/compile.ts'
import { SigV4Signer } from '../mint/sigv4.ts'
import { SigV4Injector } from '../inject/sigv4-step.ts'
import type { LogLevel, RawConfig } from './schema.ts'
import { hideInText, hideInterpolatedValues } from './hide-values.ts'
import { formatPath, interpolate, type InterpolationSources } from './interpolate.ts'
import { parseSections, type ParsedSections } from './parse-sections.ts'
import { checkListeners, parseListenAddress, type ListenAddress } from './listeners.ts'
import { suggestKeys } from './suggest-keys.ts'
import { compileRules, type CompiledRule } from '../policy/rules.ts'

/** A literal (not `${...}`) value under a key that holds secret material. */
const INLINE_SECRET = /^\s*(token|secretId|secret_id|password|clientSecret)\s*:\s*(?!\$\{)["']?[^\s"'#]/im

export type { ListenAddress } from './listeners.ts'

/** A credential compiled at load: patterns parsed, injector compiled, cache key fixed. */
export interface CompiledCredential {
  readonly name: string
  readonly provider: string
  readonly ref: string
  readonly field: string | undefined
  readonly version: string | undefined
  readonly patterns: readonly HostPattern[]
  readonly injector: CompiledInjector
  readonly ttlMs: number
  readonly insecure: boolean
  readonly prefetch: boolean
  /** Scrub the injected value from response bodies too (headers always). */
  readonly scrubResponses: boolean
  /** provider + ref + field + version (T7): two credentials reading the same secret share one cache entry. */
  readonly cacheKey: string
  /** A minted credential (oauth2, cloud access token): the cache holds the token, minted from `mint.source`. */
  readonly mint?: MintSpec
  /** An `aws-sigv4` credential: the cached value is key JSON and this signs each request with it. */
  readonly sigv4?: SigV4Signer
  /** Method/path rules; undefined = no rules (host binding only). */
  readonly rules: readonly CompiledRule[] | undefined
  readonly requireProxyAuth: boolean
}

export interface CompiledRoute {
  readonly name: string
  readonly upstream: URL
}

export interface ProviderConfig {
  readonly name: string
  readonly type: string
  readonly options: Readonly<Record<string, unknown>>
}

/** The validated, frozen configuration the daemon runs on. */
export interface Config {
  readonly listen: ListenAddress
  /** File mode (a number) and owner of the proxy's Unix socket, when `listen` is `unix:`. */
  readonly socket: { readonly mode: number; readonly owner: number | undefined; readonly group: number | undefined }
  /** The proxy listener may bind a non-loopback address, for this reason (see listeners.ts). */
  readonly exposed: { readonly reason: string } | undefined
  readonly admin: { readonly listen: ListenAddress; readonly token: string | undefined }
  readonly log: { readonly level: LogLevel; readonly format?: 'json' | 'pretty' | undefined }
  readonly cache: RawConfig['cache']
  readonly upstream: RawConfig['upstream'] & { readonly ca: string | undefined }
  readonly egress: 'deny' | 'passthrough'
  readonly limits: ServerLimits
  readonly intercept: RawConfig['intercept']
  readonly providers: Readonly<Record<string, ProviderConfig>>
  readonly credentials: Readonly<Record<string, CompiledCredential>>
  readonly routes: Readonly<Record<string, CompiledRoute>>
  /** The proxy client token, when configured. */
  readonly proxyAuth: { readonly token: string; readonly required: boolean } | undefined
  readonly audit: RawConfig['audit']
  /** Things worth a log line at start (insecure credentials, world-readable files). */
  readonly warnings: readonly string[]
}

export type LoadResult = { ok: true; config: Config } | { ok: false; issues: ConfigIssue[] }

export interface LoadOptions {
  env: Readonly<Record<string, string | undefined>>
  /** Relative paths resolve against this directory (the config file's). */
  baseDir: string
}

/** Parse YAML or JSON text (YAML is a superset) and validate it. Never throws for bad input. */
export function parseConfigText(text: string, opts: LoadOptions & { source?: string }): LoadResult {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true })
  const first = doc.errors[0]
  if (first) {
    // Only the first: one syntax slip cascades into many errors, the later ones misleading. Only
    // its first line: the excerpt below it quotes the file, which may hold a secret.
    const line = text.split('\n')[(first.linePos?.[0].line ?? 0) - 1] ?? ''
    const hint = /\{[^}]*\$\{/.test(line) ? ' — a ${env:…} or ${file:…} inside a { … } flow map must be quoted: key: "${env:NAME}"' : ''
    const more = doc.errors.length > 1 ? ` (${doc.errors.length - 1} more error${doc.errors.length > 2 ? 's' : ''} follow from it)` : ''
    return { ok: false, issues: [{ path: '', message: `${opts.source ?? 'config'}: YAML: ${first.message.split('\n')[0]}${hint}${more}` }] }
  }
  const js: unknown = doc.toJS() ?? {}
  // `$schema` points editors at the JSON Schema; it is not configuration.
  if (js !== null && typeof js === 'object' && !Array.isArray(js) && typeof (js as Record<string, unknown>).$schema === 'string') delete (js as Record<string, unknown>).$schema
  return validateConfig(js, opts)
}

/** Read and validate a config file. */
export function loadConfigFile(file: string, env: LoadOptions['env']): LoadResult {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    return { ok: false, issues: [{ path: '', message: `cannot read config file ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})` }] }
  }
  const result = parseConfigText(text, { env, baseDir: path.dirname(path.resolve(file)), source: file })
  if (result.ok && worldReadable(file) && INLINE_SECRET.test(text)) {
    // The config and its warnings are frozen: a copy with one more warning, frozen the same way.
    const warnings = Object.freeze([...result.config.warnings, `config file ${file} is world-readable and may hold secret material (chmod 600)`])
    return { ok: true, config: Object.freeze({ ...result.config, warnings }) }
  }
  return result
}

/**
 * Validate a raw config object (as parsed from YAML) into a frozen `Config`. Every problem
 * is reported in one run, sorted by path: the schema's (stage one) and the cross-field
 * checks' (stage two), which run on every part that passed stage one.
 */
export function validateConfig(rawInput: unknown, opts: LoadOptions): LoadResult {
  const substitution: ConfigIssue[] = []
  const sources: InterpolationSources = new Map()
  const interpolated = interpolate(rawInput, opts.env, opts.baseDir, substitution, sources)
  const stage1 = parseSections(interpolated)
  const issues: ConfigIssue[] = [...stage1.issues]
  const result = compile(stage1.raw, stage1.providerNames, opts, issues, sources)
  checkFailedCredentials(stage1.failedCredentials, stage1.providerNames, issues)
  // A value whose ${...} could not be resolved is reported once, for the substitution.
  const unresolved = new Set(substitution.map((i) => i.path))
  const all = [...substitution, ...issues.filter((i) => !unresolved.has(i.path))]
  if (all.length > 0 || result === undefined) return { ok: false, issues: sortByPath(dedupe(hideInterpolatedValues(suggestKeys(all, rawInput), sources))) }
  return { ok: true, config: result }
}

/** What can still be checked in a credential the schema refused: its provider reference and each host pattern. */
function checkFailedCredentials(failed: ParsedSections['failedCredentials'], providerNames: readonly string[], issues: ConfigIssue[]): void {
  for (const [name, c] of Object.entries(failed)) {
    const at = `credentials.${name}`
    if (typeof c.provider === 'string' && c.provider !== '' && !providerNames.includes(c.provider)) issues.push(missingProvider(at, c.provider, providerNames))
    if (!Array.isArray(c.hosts)) continue
    c.hosts.forEach((h: unknown, i) => {
      if (typeof h !== 'string' || h === '') return
      const r = parseHostPattern(h)
      if (!r.ok) issues.push({ path: `${at}.hosts[${i}]`, message: r.message })
    })
  }
}

function missingProvider(at: string, provider: string, providerNames: readonly string[]): ConfigIssue {
  return { path: `${at}.provider`, message: `no provider named ${JSON.stringify(provider)} (defined: ${providerNames.join(', ') || 'none'})` }
}

/** Stage two: the cross-field checks and the frozen Config; `sources` lets the warnings name `${...}` references instead of their values. */
function compile(raw: RawConfig, providerNames: readonly string[], opts: LoadOptions, issues: ConfigIssue[], sources: InterpolationSources): Config | undefined {
  const warnings: string[] = []
  const resolvePath = (p: string) => path.resolve(opts.baseDir, p)

  // Providers: each type validates its own options.
  const providers: Record<string, ProviderConfig> = {}
  for (const [name, entry] of Object.entries(raw.providers)) {
    const factory = PROVIDERS[entry.type]
    if (!factory) {
      issues.push({ path: `providers.${name}.type`, message: `unknown provider type ${JSON.stringify(entry.type)} (known: ${Object.keys(PROVIDERS).join(', ')})` })
      continue
    }
    let r: ReturnType<z.ZodType['safeParse']>
    try {
      r = (factory.optionsSchema as z.ZodType).safeParse(entry)
    } catch (err) {
      // A provider's refinement that throws must not end `check`: report it at the provider, by class and code only.
      const e = err as { name?: unknown; code?: unknown }
      issues.push({ path: `providers.${name}`, message: `the ${entry.type} provider could not validate these options (${typeof e.name === 'string' ? e.name : 'error'}${typeof e.code === 'string' ? ` ${e.code}` : ''}); check each URL and value` })
      continue
    }
    if (!r.success) {
      for (const i of r.error.issues) issues.push({ path: formatPath(['providers', name, ...i.path]), message: i.message })
      continue
    }
    const options = resolvePaths(r.data as Record<string, unknown>, resolvePath)
    providers[name] = Object.freeze({ name, type: entry.type, options })
  }

  // Credentials: provider exists, patterns parse, injector compiles.
  const credentials: Record<string, CompiledCredential> = {}
  for (const [name, c] of Object.entries(raw.credentials)) {
    const at = `credentials.${name}`
    const mint = compileMint(name, c, raw.cache.ttl, issues)
    if (c.provider !== undefined && !providerNames.includes(c.provider)) {
      issues.push(missingProvider(at, c.provider, providerNames))
    }
    const patterns: HostPattern[] = []
    c.hosts.forEach((h, i) => {
      const r = parseHostPattern(h)
      if (r.ok) patterns.push(r.pattern)
      else issues.push({ path: `${at}.hosts[${i}]`, message: r.message })
    })
    let injector: CompiledInjector | undefined
    let sigv4: SigV4Signer | undefined
    if (c.inject.type === 'aws-sigv4') {
      injector = new SigV4Injector(name, c.inject.overwrite)
      sigv4 = new SigV4Signer({ region: c.inject.region, service: c.inject.service, endpoints: sigv4Endpoints(c.inject.endpoints), maxBodyBytes: c.inject.maxBodyBytes })
    } else {
      try {
        injector = compileInjector(name, c.inject.type === 'bearer' || c.inject.type === 'basic' || c.inject.type === 'header' ? c.inject : { type: 'bearer', overwrite: c.inject.overwrite }, mint ? undefined : c.field)
      } catch (err) {
        issues.push({ path: `${at}.inject`, message: (err as Error).message })
      }
    }
    if (c.insecure) warnings.push(`credential ${name} has insecure: true: it may be sent over plain http (loopback and dev only)`)
    // The forward proxy sends a credentialed http:// request for port 80 over TLS to 443, so
    // without insecure such a pattern matches only TLS spoken on port 80: almost always a slip.
    else for (const p of patterns) if (p.port === 80) warnings.push(`credential ${name}: host pattern ${p.source} names port 80, but credentialed http:// requests go over TLS to port 443; write the host without :80 (or set insecure: true for plain http)`)
    const rules = c.allow === undefined ? undefined : Object.freeze(compileRules(c.allow, `${at}.allow`, issues))
    if (!injector || mint === null) continue
    credentials[name] = Object.freeze({
      name,
      provider: c.provider ?? c.inject.type,
      ref: c.ref ?? '',
      field: c.field,
      version: c.version,
      patterns: Object.freeze(patterns),
      injector,
      ttlMs: c.ttl ?? raw.cache.ttl,
      insecure: c.insecure,
      prefetch: c.prefetch ?? raw.cache.prefetch,
      scrubResponses: c.scrubResponses,
      cacheKey: mint ? `mint\u0000${name}` : [c.provider, c.ref, c.field ?? '', c.version ?? ''].join('\u0000'),
      ...(mint ? { mint } : {}),
      ...(sigv4 ? { sigv4 } : {}),
      rules,
      requireProxyAuth: c.requireProxyAuth,
    })
  }
  for (const o of findOverlaps(Object.values(credentials).map((c) => ({ name: c.name, patterns: c.patterns, value: c })))) {
    issues.push({
      path: `credentials.${o.b}.hosts`,
      message: `pattern ${JSON.stringify(o.patternB)} can match the same host:port as ${JSON.stringify(o.patternA)} of credential ${o.a}; each destination must have at most one credential`,
    })
  }

  // Routes: absolute http(s) URLs without userinfo, query or fragment.
  const routes: Record<string, CompiledRoute> = {}
  for (const [name, r] of Object.entries(raw.routes)) {
    const at = `routes.${name}.upstream`
    let url: URL
    try {
      url = new URL(r.upstream)
    } catch {
      issues.push({ path: at, message: `not an absolute URL: ${JSON.stringify(r.upstream)}` })
      continue
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') issues.push({ path: at, message: 'upstream must be http:// or https://' })
    else if (url.username || url.password) issues.push({ path: at, message: 'upstream URL must not contain userinfo; bind a credential to the host instead' })
    else if (url.search || url.hash) issues.push({ path: at, message: 'upstream URL must not contain a query or fragment' })
    else if (normalizeHost(url.hostname) === undefined) issues.push({ path: at, message: `upstream host ${JSON.stringify(url.hostname)} is not a valid host name or IP literal` })
    else if (url.protocol === 'http:') {
      const tls = false
      const host = normalizeHost(url.hostname)
      const port = url.port ? Number(url.port) : 80
      for (const c of Object.values(credentials)) {
        if (!c.insecure && host !== undefined && c.patterns.some((p) => patternMatches(p, host, port, tls))) {
          issues.push({ path: at, message: `credential ${c.name} is bound to this plain-http destination; use https:// or set credentials.${c.name}.insecure: true (loopback and dev only)` })
        }
      }
    }
    if (url.pathname.endsWith('/') && url.pathname !== '/') url.pathname = url.pathname.replace(/\/+$/, '')
    routes[name] = Object.freeze({ name, upstream: url })
  }

  const readToken = (at: string, inline: string | undefined, tokenFile: string | undefined): string | undefined => {
    if (inline !== undefined && tokenFile !== undefined) {
      issues.push({ path: at, message: `set ${at}.token or ${at}.tokenFile, not both` })
      return undefined
    }
    if (tokenFile === undefined) return inline
    const file = resolvePath(tokenFile)
    try {
      const token = readFileSync(file, 'utf8').split(/\r?\n/)[0]?.trim()
      if (!token || token.length < 16) issues.push({ path: `${at}.tokenFile`, message: `${file} must hold a token of at least 16 characters` })
      if (worldReadable(file)) warnings.push(`${at} token file ${file} is world-readable (chmod 600)`)
      return token
    } catch (err) {
      issues.push({ path: `${at}.tokenFile`, message: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})` })
      return undefined
    }
  }
  // Tokens: inline or from a file; never both.
  const adminToken = readToken('admin', raw.admin.token, raw.admin.tokenFile)
  let proxyAuth: Config['proxyAuth']
  if (raw.proxyAuth !== undefined) {
    const token = readToken('proxyAuth', raw.proxyAuth.token, raw.proxyAuth.tokenFile)
    if (raw.proxyAuth.token === undefined && raw.proxyAuth.tokenFile === undefined) issues.push({ path: 'proxyAuth', message: 'set proxyAuth.token or proxyAuth.tokenFile' })
    if (token !== undefined) proxyAuth = Object.freeze({ token, required: raw.proxyAuth.required })
  }
  for (const c of Object.values(credentials)) {
    if (c.requireProxyAuth && raw.proxyAuth === undefined) issues.push({ path: `credentials.${c.name}.requireProxyAuth`, message: 'requireProxyAuth needs a proxy client token: set proxyAuth.tokenFile (or proxyAuth.token)' })
  }
  if (raw.audit.sink === 'file' && raw.audit.file === undefined) issues.push({ path: 'audit.file', message: 'audit.sink is file: set audit.file to the audit log path' })

  let ca: string | undefined
  if (raw.upstream.caFile !== undefined) {
    const file = resolvePath(raw.upstream.caFile)
    try {
      ca = readFileSync(file, 'utf8')
      if (!ca.includes('-----BEGIN CERTIFICATE-----')) issues.push({ path: 'upstream.caFile', message: `${file} holds no PEM certificate` })
    } catch (err) {
      issues.push({ path: 'upstream.caFile', message: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})` })
    }
  }

  const listen = parseListen(raw.listen, 'listen', issues, resolvePath)
  const adminListen = parseListen(raw.admin.listen, 'admin.listen', issues)
  const exposed = raw.exposed === undefined ? undefined : Object.freeze({ reason: raw.exposed.reason })
  if (listen && adminListen) {
    const r = checkListeners({ listen, exposed, admin: { listen: adminListen, token: adminToken } })
    issues.push(...r.issues)
    warnings.push(...r.warnings)
  }
  if (issues.length > 0) return undefined

  const config: Config = {
    listen: listen as ListenAddress,
    socket: Object.freeze({ mode: parseInt(raw.socket.mode, 8), owner: raw.socket.owner, group: raw.socket.group }),
    exposed,
    admin: Object.freeze({ listen: adminListen as ListenAddress, token: adminToken }),
    log: Object.freeze({ level: raw.log.level, format: raw.log.format }),
    cache: Object.freeze(raw.cache),
    upstream: Object.freeze({ ...raw.upstream, caFile: raw.upstream.caFile === undefined ? undefined : resolvePath(raw.upstream.caFile), ca }),
    egress: raw.egress,
    limits: resolveServerLimits(raw.limits, raw.upstream),
    intercept: Object.freeze({ ...raw.intercept, caDir: resolvePath(raw.intercept.caDir), publicCaFile: raw.intercept.publicCaFile === undefined ? undefined : resolvePath(raw.intercept.publicCaFile) }),
    providers: Object.freeze(providers),
    credentials: Object.freeze(credentials),
    routes: Object.freeze(routes),
    proxyAuth,
    audit: Object.freeze({ ...raw.audit, file: raw.audit.file === undefined ? undefined : resolvePath(raw.audit.file) }),
    // Hidden before freezing: the warnings are as frozen as the rest of the config.
    warnings: Object.freeze(warnings.map((w) => hideInText(w, sources))),
  }
  return Object.freeze(config)
}

/** Like `validateConfig` but throws `ConfigError` listing every problem. */
export function compileConfig(raw: unknown, opts: LoadOptions): Config {
  const r = validateConfig(raw, opts)
  if (!r.ok) throw new ConfigError(r.issues)
  return r.config
}

function parseListen(value: string, at: string, issues: ConfigIssue[], resolvePath?: (p: string) => string): ListenAddress | undefined {
  const r = parseListenAddress(value, resolvePath)
  if (typeof r === 'string') {
    issues.push({ path: at, message: r })
    return undefined
  }
  return r
}

/** Provider options: `dir` and every `*File` key, at any depth (e.g. `auth.secretIdFile`), resolve against the config's directory. */
function resolvePaths(obj: Record<string, unknown>, resolve: (p: string) => string): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(obj)) {
    if (typeof v === 'string' && (k === 'dir' || k.endsWith('File'))) out[k] = resolve(v)
    else if (v !== null && typeof v === 'object' && !Array.isArray(v)) out[k] = Object.freeze(resolvePaths(v as Record<string, unknown>, resolve))
    else out[k] = v
  }
  return Object.freeze(out)
}

function worldReadable(file: string): boolean {
  try {
    return (statSync(file).mode & 0o004) !== 0
  } catch {
    return false
  }
}

function sortByPath(issues: ConfigIssue[]): ConfigIssue[] {
  return issues.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
}

function dedupe(issues: ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>()
  return issues.filter((i) => {
    const k = `${i.path}\u0000${i.message}`
    if (seen.has(k)) return false
    seen.add(k)
    return true
  })
}

/** Endpoint hosts as the signer looks them up: lowercase, without a default port. */
function sigv4Endpoints(endpoints: Readonly<Record<string, { region: string; service: string }>> | undefined): Record<string, { region: string; service: string }> | undefined {
  if (endpoints === undefined) return undefined
  return Object.fromEntries(Object.entries(endpoints).map(([host, scope]) => [host.toLowerCase().replace(/:(443|80)$/, ''), scope]))
}
