import type { IncomingMessage } from 'node:http'
import type { CompiledCredential, CompiledRoute, Config } from '../config/load.ts'
import type { ErrorCode } from '../errors.ts'
import { CredentialMatcher } from '../binding/credential-matcher.ts'
import { normalizeHost, patternMatches, sameAuthority, splitHostPort } from '../binding/host-pattern.ts'
import { isLinkLocal } from './upstream.ts'

/** Where a request goes, decided before anything is sent. */
export interface Target {
  readonly mode: 'route' | 'forward' | 'intercept'
  /** `https://host:port` — the connection latchkey makes. */
  readonly origin: string
  /** Path and query sent upstream. */
  readonly path: string
  /** The Host header sent upstream. */
  readonly hostHeader: string
  /** host:port as matched, for logs. */
  readonly host: string
  readonly credential: CompiledCredential | undefined
  /** No credential: use the passthrough agent (link-local guard). */
  readonly passthrough: boolean
  readonly route: string | undefined
}

export type Refusal = { readonly refused: true; readonly code: ErrorCode; readonly message: string }
export type Resolution = Target | Refusal

/** For CONNECT: what to do with the tunnel. */
export type ConnectDecision =
  | { kind: 'intercept'; host: string; port: number; credential: CompiledCredential }
  | { kind: 'tunnel'; host: string; port: number }
  | Refusal

interface RouteTarget {
  readonly route: CompiledRoute
  readonly origin: string
  readonly basePath: string
  readonly hostHeader: string
  readonly host: string
  readonly credential: CompiledCredential | undefined
}

const DOT_SEGMENT = /(^|\/)(\.|%2e){1,2}(\/|$)/i

/**
 * Request → target. Matching is precompiled (CredentialMatcher memoises per host:port:tls);
 * routes are a Map by first path segment.
 */
export class TargetResolver {
  readonly #matcher: CredentialMatcher<CompiledCredential>
  readonly #routes = new Map<string, RouteTarget>()
  readonly #credentials: readonly CompiledCredential[]
  readonly #egress: Config['egress']
  readonly #interceptEnabled: boolean
  readonly #allowLinkLocal: boolean

  constructor(config: Config) {
    this.#credentials = Object.values(config.credentials)
    this.#matcher = new CredentialMatcher(this.#credentials.map((c) => ({ name: c.name, patterns: c.patterns, value: c })))
    this.#egress = config.egress
    this.#interceptEnabled = config.intercept.enabled
    this.#allowLinkLocal = config.upstream.allowLinkLocal
    for (const r of Object.values(config.routes)) this.#routes.set(r.name, this.#routeTarget(r))
  }

  /** The credential bound to host:port for a connection of this kind, if any. */
  match(host: string, port: number, tls: boolean): CompiledCredential | undefined {
    const c = this.#matcher.match(host, port, tls)?.value
    // A credential is sent over plain http only when it says insecure: true.
    return c && (tls || c.insecure) ? c : undefined
  }

  resolve(req: IncomingMessage): Resolution {
    if (hasDuplicateHost(req.rawHeaders)) return DUPLICATE_HOST
    const url = req.url ?? '/'
    if (url.startsWith('/')) return this.#route(url)
    return this.#forward(req, url)
  }

  #route(url: string): Resolution {
    const slash = url.indexOf('/', 1)
    const q = url.indexOf('?')
    const end = slash === -1 ? (q === -1 ? url.length : q) : q !== -1 && q < slash ? q : slash
    const name = decodeSafe(url.slice(1, end))
    const fixed = name === undefined ? undefined : this.#routes.get(name)
    if (!fixed) return refuse('route_not_found', `no route named ${JSON.stringify(url.slice(1, end).slice(0, 64))}; routes are /<route>/<path>`)
    let rest = url.slice(end)
    if (rest.startsWith('?') || rest === '') rest = '/' + rest
    const rq = rest.indexOf('?')
    const restPath = rq === -1 ? rest : rest.slice(0, rq)
    if (DOT_SEGMENT.test(restPath)) return refuse('bad_request', 'dot segments (.. or .) are not allowed in route paths')
    return {
      mode: 'route',
      origin: fixed.origin,
      path: fixed.basePath + rest,
      hostHeader: fixed.hostHeader,
      host: fixed.host,
      credential: fixed.credential,
      passthrough: fixed.credential === undefined,
      route: fixed.route.name,
    }
  }

  /** Everything about a route's destination that does not depend on the request, decided at load. */
  #routeTarget(route: CompiledRoute): RouteTarget {
    const u = route.upstream
    const tls = u.protocol === 'https:'
    const port = u.port ? Number(u.port) : tls ? 443 : 80
    const host = normalizeHost(u.hostname) ?? u.hostname
    return {
      route,
      origin: `${u.protocol}//${u.host}`,
      basePath: u.pathname === '/' ? '' : u.pathname,
      hostHeader: u.host,
      host: `${host}:${port}`,
      credential: this.match(host, port, tls),
    }
  }

  #forward(req: IncomingMessage, raw: string): Resolution {
    if (/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(raw)) return refuse('userinfo_not_allowed', 'userinfo (user:pass@) in the request URI is not allowed')
    let u: URL
    try {
      u = new URL(raw)
    } catch {
      return refuse('bad_request', 'the request target is neither a route path nor an absolute http:// URI')
    }
    if (u.protocol !== 'http:') return refuse('unsupported_scheme', `${u.protocol}// is not proxied in absolute form; send http:// URLs, or use CONNECT (HTTPS_PROXY) for https://`)
    if (u.username || u.password) return refuse('userinfo_not_allowed', 'userinfo (user:pass@) in the request URI is not allowed')
    const host = normalizeHost(u.hostname)
    if (!host) return refuse('invalid_host', 'the request URI names no valid host')
    const port = u.port ? Number(u.port) : 80
    const hostHeader = req.headers.host
    if (hostHeader !== undefined) {
      if (!sameAuthority(hostHeader, host, port, 80)) {
        return refuse('host_mismatch', 'the Host header and the absolute request URI name different destinations')
      }
    }
    // The path as received (never URL.pathname, which resolves dot-segments on its own terms): the policy step normalises it once.
    const path = rawPathOf(raw)
    // A credentialed destination is reached over TLS: port 80 becomes 443, another explicit port keeps its number.
    const tlsPort = port === 80 ? 443 : port
    const overTls = this.match(host, tlsPort, true)
    if (overTls && !overTls.insecure) return this.#target('forward', 'https', host, tlsPort, path, overTls)
    const plain = this.match(host, port, false)
    if (plain) return this.#target('forward', 'http', host, port, path, plain)
    if (overTls) return this.#target('forward', 'https', host, tlsPort, path, overTls)
    if (this.#egress === 'deny') return refuse('egress_denied', `no credential is bound to ${host}:${port} and egress is deny`)
    // An IP literal is connected without a DNS lookup, so the agent's lookup guard never sees it.
    if (!this.#allowLinkLocal && isLinkLocal(unbracket(host))) return refuse('link_local_denied', `${host} is a link-local / metadata address; refused (upstream.allowLinkLocal)`)
    return this.#target('forward', 'http', host, port, path, undefined)
  }

  #target(mode: Target['mode'], scheme: 'http' | 'https', host: string, port: number, path: string, credential: CompiledCredential | undefined): Target {
    return targetOf(mode, scheme, host, port, path, credential)
  }

  /** A decrypted request inside an intercepted tunnel to host:port. */
  intercepted(host: string, port: number, credential: CompiledCredential, path: string): Target {
    return interceptedTarget(host, port, credential, path)
  }

  connect(authority: string): ConnectDecision {
    const hp = splitHostPort(authority)
    const host = hp ? normalizeHost(hp.host) : undefined
    if (!hp || !host || hp.port === undefined) return refuse('invalid_host', 'CONNECT needs host:port')
    const credential = this.match(host, hp.port, true)
    if (credential) {
      if (!this.#interceptEnabled) {
        return refuse('intercept_disabled', `a credential (${credential.name}) is bound to ${host}:${hp.port}; CONNECT tunnels cannot carry it. Enable intercept.enabled, or send http:// URLs through the proxy (HTTP_PROXY) or use a route`)
      }
      return { kind: 'intercept', host, port: hp.port, credential }
    }
    if (this.#boundOnAnyPort(host)) {
      return refuse('intercept_port_not_allowed', `${host} is bound to a credential, but not on port ${hp.port}`)
    }
    if (this.#egress === 'deny') return refuse('egress_denied', `no credential is bound to ${host}:${hp.port} and egress is deny`)
    if (!this.#allowLinkLocal && isLinkLocal(unbracket(host))) return refuse('link_local_denied', `${host} is a link-local / metadata address; refused (upstream.allowLinkLocal)`)
    return { kind: 'tunnel', host, port: hp.port }
  }

  #boundOnAnyPort(host: string): boolean {
    return this.#credentials.some((c) => c.patterns.some((p) => patternMatches({ ...p, port: '*' }, host, 0, true)))
  }
}

function targetOf(mode: Target['mode'], scheme: 'http' | 'https', host: string, port: number, path: string, credential: CompiledCredential | undefined): Target {
  const defaultPort = scheme === 'https' ? 443 : 80
  const authority = port === defaultPort ? host : `${host}:${port}`
  return { mode, origin: `${scheme}://${host}:${port}`, path, hostHeader: authority, host: `${host}:${port}`, credential, passthrough: credential === undefined, route: undefined }
}

/** A decrypted request inside an intercepted tunnel to host:port (the tunnel fixed its destination and credential). */
export function interceptedTarget(host: string, port: number, credential: CompiledCredential, path: string): Target {
  return targetOf('intercept', 'https', host, port, path, credential)
}

/**
 * RFC 9112 §3.2: a request with more than one Host field is answered 400. Node keeps the
 * first and drops the rest, so a proxy that matched one and an upstream that read another
 * would disagree about the destination. One pass over the raw list, comparing lengths first.
 */
export function hasDuplicateHost(rawHeaders: readonly string[]): boolean {
  let seen = false
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const n = rawHeaders[i] as string
    if (n.length === 4 && (n === 'Host' || n === 'host' || n.toLowerCase() === 'host')) {
      if (seen) return true
      seen = true
    }
  }
  return false
}

export const DUPLICATE_HOST: Refusal = Object.freeze({ refused: true, code: 'bad_request', message: 'more than one Host header (RFC 9112 §3.2)' })

function refuse(code: ErrorCode, message: string): Refusal {
  return { refused: true, code, message }
}

/** The path and query of an absolute-form target as received (`/` when it has none); the fragment is dropped. */
export function rawPathOf(absolute: string): string {
  const m = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(absolute)
  let rest = m === null ? absolute : absolute.slice(m[0].length)
  const hash = rest.indexOf('#')
  if (hash !== -1) rest = rest.slice(0, hash)
  return rest.startsWith('/') ? rest : '/' + rest
}

function unbracket(host: string): string {
  return host.startsWith('[') ? host.slice(1, -1) : host
}

function decodeSafe(s: string): string | undefined {
  try {
    return decodeURIComponent(s)
  } catch {
    return undefined
  }
}

export function isRefusal(r: Resolution | ConnectDecision): r is Refusal {
  return 'refused' in r
}
