/**
 * Host binding primitives: parse `hosts:` patterns at load, normalise request hosts, and
 * decide whether a pattern matches a destination. Everything here is pure; the matcher
 * that precompiles many patterns lives in `credential-matcher.ts`.
 *
 * Threat T1 (credential sent to the wrong server) is answered by comparing *normalised*
 * strings exactly: a host is matched in the form latchkey will connect to, so case, a
 * trailing dot, Unicode look-alikes of ASCII (IDNA mapping) and odd IPv4 spellings
 * (`0x7f.1`, `2130706433`) cannot make one destination look like another.
 */

import { isPublicSuffix, publicSuffixBelow } from './public-suffix.ts'

/** A parsed `hosts:` entry. port: a number (exact), '*' (any port), or 'default' (443 for TLS, 80 for plain). */
export interface HostPattern {
  /** The pattern as written in the config (for messages). */
  source: string
  /** Normalised host; for a wildcard, the suffix after `*.`. */
  host: string
  /** `*.host`: matches any host with at least one more label in front of `host`. */
  wildcard: boolean
  port: number | '*' | 'default'
}

export type ParseResult = { ok: true; pattern: HostPattern } | { ok: false; message: string }

const MAX_LABEL = 63
const MAX_HOST = 253
/** Longer input is refused before any parsing work (a Host header is attacker-controlled). */
const MAX_INPUT = 1024

/** ASCII characters allowed before IDNA processing; any other ASCII byte makes the host invalid. */
const ALLOWED_ASCII = /^[A-Za-z0-9._-]$/
/** The only characters a normalised DNS name may hold. */
const LDH = /^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/
const IPV4 = /^(?:\d{1,3}\.){3}\d{1,3}$/
const PORT_DIGITS = /^[0-9]{1,5}$/
/** The fast path's answer when it cannot decide: take the WHATWG path. */
const SLOW = Symbol('slow')

/**
 * Normalise a host from a request or URL: lowercase, IDNA → ASCII (punycode), one trailing dot dropped,
 * IPv4 in canonical dotted form (also from odd forms such as 0x7f.1 / 2130706433 as WHATWG URL parses them),
 * IPv6 compressed and in brackets.
 * Returns undefined for anything that is not a valid host (empty, spaces, '@', '/', '%', two trailing dots,
 * empty labels, labels over 63 or names over 253 characters, ...).
 */
export function normalizeHost(host: string): string | undefined {
  if (typeof host !== 'string' || host.length === 0 || host.length > MAX_INPUT) return undefined
  // A forward-proxied request normalises its URI's host and its Host header, the same few names
  // again and again: the answers are kept, in a map that is emptied when full (a client sending
  // endless new names costs the work, never the memory).
  const known = NORMALIZED.get(host)
  if (known !== undefined) return known === INVALID ? undefined : known
  const result = normalizeUncached(host)
  if (NORMALIZED.size >= NORMALIZED_MAX) NORMALIZED.clear()
  NORMALIZED.set(host, result ?? INVALID)
  return result
}

const INVALID = Symbol('invalid host')
const NORMALIZED_MAX = 1024
const NORMALIZED = new Map<string, string | typeof INVALID>()

function normalizeUncached(host: string): string | undefined {
  const fast = fastDnsName(host)
  if (fast !== SLOW) return fast
  if (isCanonicalIpv4(host)) return host
  if (host.charCodeAt(0) === 0x5b /* [ */) return normalizeIpv6(host)
  if (host.includes(':')) return normalizeIpv6('[' + host + ']')
  for (let i = 0; i < host.length; i++) {
    const c = host.charCodeAt(i)
    // Every ASCII byte outside letters, digits, '.', '-', '_' is refused *before* the URL parser sees it:
    // the parser would treat '@', '/', '\\', '?', '#' as delimiters, strip tabs and newlines, and
    // percent-decode (`example.com%2e`), so the host it returns would not be the text we were given.
    if (c < 0x80 && !ALLOWED_ASCII.test(host[i] as string)) return undefined
  }
  let parsed: string
  try {
    parsed = new URL(`http://${host}/`).hostname
  } catch {
    return undefined
  }
  if (parsed.endsWith('.')) parsed = parsed.slice(0, -1)
  if (IPV4.test(parsed)) return parsed
  return checkDnsName(parsed)
}

/**
 * One scan for the common case, a plain ASCII DNS name: letters, digits, '-', '_', non-empty
 * labels, at most one trailing dot. It must give exactly what the WHATWG path gives (a
 * property test checks this), so anything IPv4-like (numeric last label) or punycode (`xn--`)
 * is left to the slow path. Allocates only when it lowercases or drops the trailing dot.
 */
function fastDnsName(host: string): string | undefined | typeof SLOW {
  const len = host.length
  const end = host.charCodeAt(len - 1) === 0x2e /* . */ ? len - 1 : len
  let labelStart = 0
  let upper = false
  for (let i = 0; i <= end; i++) {
    const c = i === end ? 0x2e : host.charCodeAt(i)
    if (c === 0x2e) {
      const labelLen = i - labelStart
      if (labelLen === 0) return SLOW
      if (labelLen > MAX_LABEL) return undefined
      labelStart = i + 1
      continue
    }
    if (i === labelStart && (c === 0x78 || c === 0x58) /* x */ && i + 3 < end && host.charCodeAt(i + 2) === 0x2d && host.charCodeAt(i + 3) === 0x2d) {
      return SLOW // possibly xn--
    }
    if ((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f) continue
    if (c >= 0x41 && c <= 0x5a) {
      upper = true
      continue
    }
    return SLOW
  }
  if (end > MAX_HOST) return undefined
  // The last label decides whether WHATWG reads the host as IPv4: all digits, or 0x + hex.
  const lastStart = host.lastIndexOf('.', end - 1) + 1
  let numeric = true
  const hex = end - lastStart >= 2 && host.charCodeAt(lastStart) === 0x30 && (host.charCodeAt(lastStart + 1) | 0x20) === 0x78
  for (let i = hex ? lastStart + 2 : lastStart; i < end && numeric; i++) {
    const c = host.charCodeAt(i) | 0x20
    numeric = (c >= 0x30 && c <= 0x39) || (hex && c >= 0x61 && c <= 0x66)
  }
  if (numeric) return SLOW
  const trimmed = end === len ? host : host.slice(0, end)
  return upper ? trimmed.toLowerCase() : trimmed
}

/** Dotted decimal with no leading zeros and every part ≤ 255: already what WHATWG would print. */
function isCanonicalIpv4(host: string): boolean {
  if (!IPV4.test(host)) return false
  for (const part of host.split('.')) {
    if ((part.length > 1 && part.charCodeAt(0) === 0x30) || Number(part) > 255) return false
  }
  return true
}

function checkDnsName(name: string): string | undefined {
  if (name.length === 0 || name.length > MAX_HOST || !LDH.test(name)) return undefined
  let start = 0
  for (;;) {
    const dot = name.indexOf('.', start)
    const end = dot === -1 ? name.length : dot
    if (end - start > MAX_LABEL) return undefined
    if (dot === -1) return name
    start = dot + 1
  }
}

function normalizeIpv6(bracketed: string): string | undefined {
  if (!/^\[[0-9A-Fa-f:.]+\]$/.test(bracketed)) return undefined // no zone ids (`%eth0`), no ports
  try {
    const h = new URL(`http://${bracketed}/`).hostname
    return h.startsWith('[') ? h : undefined
  } catch {
    return undefined
  }
}

/** Split an authority `host[:port]` / `[v6]:port`; port must be 1-65535 digits only. undefined if malformed. */
export function splitHostPort(authority: string): { host: string; port: number | undefined } | undefined {
  if (typeof authority !== 'string' || authority.length === 0 || authority.length > MAX_INPUT) return undefined
  let host: string
  let rest: string
  if (authority.charCodeAt(0) === 0x5b /* [ */) {
    const close = authority.indexOf(']')
    if (close === -1) return undefined
    host = authority.slice(0, close + 1)
    rest = authority.slice(close + 1)
    if (rest !== '' && rest.charCodeAt(0) !== 0x3a /* : */) return undefined
  } else {
    const colon = authority.indexOf(':')
    if (colon === -1) return { host: authority, port: undefined }
    if (authority.indexOf(':', colon + 1) !== -1) return undefined // unbracketed IPv6 is ambiguous with a port
    host = authority.slice(0, colon)
    rest = authority.slice(colon)
  }
  if (host.length === 0 || host === '[]') return undefined
  if (rest === '') return { host, port: undefined }
  const port = parsePort(rest.slice(1))
  return port === undefined ? undefined : { host, port }
}

function parsePort(text: string): number | undefined {
  if (!PORT_DIGITS.test(text)) return undefined
  const n = Number(text)
  return n >= 1 && n <= 65535 ? n : undefined
}

/**
 * Whether an authority (a Host header, or the host part of a URI) names the normalised
 * destination `host`:`port`. Both sides are compared in normal form, as RFC 3986 §6.2.3 has
 * it: an empty port (`host:`) is the scheme's `defaultPort`, and leading zeros (`host:00080`,
 * which the WHATWG parser reads as 80 on the URI side) do not change a port.
 */
export function sameAuthority(authority: string, host: string, port: number, defaultPort: number): boolean {
  const hp = splitHostPort(trimPort(authority))
  if (!hp) return false
  return normalizeHost(hp.host) === host && (hp.port ?? defaultPort) === port
}

/** `host:` → `host`, `host:000080` → `host:80`; anything else unchanged (splitHostPort judges it). */
function trimPort(authority: string): string {
  const colon = authority.lastIndexOf(':')
  // The port's colon follows the host: after the `]` of an IPv6 literal, the only colon of anything else.
  if (colon <= 0 || (authority.charCodeAt(0) === 0x5b /* [ */ ? authority.charCodeAt(colon - 1) !== 0x5d /* ] */ : authority.indexOf(':') !== colon)) return authority
  if (colon === authority.length - 1) return authority.slice(0, colon)
  let i = colon + 1
  while (i < authority.length - 1 && authority.charCodeAt(i) === 0x30 /* 0 */) i++
  return i === colon + 1 ? authority : authority.slice(0, colon + 1) + authority.slice(i)
}

/** Why a string is not a host pattern, for anything that looks like a URL instead. */
function urlShapeProblem(input: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(input)) {
    return 'a host pattern has no scheme: write the host (and optional :port), e.g. example.com or example.com:8443; TLS is chosen per connection'
  }
  if (input.includes('@')) return 'userinfo (user@ or user:pass@) is not allowed in a host pattern; the credential itself is what latchkey injects'
  if (input.includes('/') || input.includes('\\')) return 'a host pattern has no path: a credential is bound to a whole host:port, e.g. example.com'
  if (input.includes('?')) return 'a host pattern has no query string'
  if (input.includes('#')) return 'a host pattern has no fragment'
  if (input.includes('%')) return 'percent-encoding is not allowed in a host pattern; write the host name itself (Unicode names are converted to punycode)'
  if (/\s/.test(input)) return 'a host pattern must not contain spaces'
  return undefined
}

/** Parse one `hosts:` entry; the message says why a pattern is refused. */
export function parseHostPattern(input: string): ParseResult {
  if (typeof input !== 'string' || input.length === 0) return fail('empty host pattern')
  if (input.length > MAX_INPUT) return fail(`host pattern is longer than ${MAX_INPUT} characters`)
  const shape = urlShapeProblem(input)
  if (shape) return fail(shape)
  if (input.startsWith('*.[')) return fail('wildcards cannot be used with IP addresses')

  // host / port split; IPv6 needs brackets so its colons are not read as a port.
  let hostText = input
  let port: HostPattern['port'] = 'default'
  if (input.startsWith('[')) {
    const close = input.indexOf(']')
    if (close === -1) return fail('unterminated IPv6 literal: expected [addr] or [addr]:port')
    hostText = input.slice(0, close + 1)
    const rest = input.slice(close + 1)
    if (rest !== '') {
      if (!rest.startsWith(':')) return fail('after an IPv6 literal only :port may follow, e.g. [::1]:8443')
      const p = patternPort(rest.slice(1))
      if (typeof p === 'object') return p
      port = p
    }
  } else {
    const colon = input.indexOf(':')
    if (colon !== -1) {
      if (input.indexOf(':', colon + 1) !== -1) return fail('IPv6 literals must be written in brackets, e.g. [::1] or [::1]:8443')
      hostText = input.slice(0, colon)
      const p = patternPort(input.slice(colon + 1))
      if (typeof p === 'object') return p
      port = p
    }
  }
  if (hostText.length === 0) return fail('host pattern has a port but no host')

  if (hostText.includes('*')) {
    if (hostText === '*' || hostText === '*.') return fail('a bare * would match every host; list the hosts, or use *.example.com for the subdomains of one domain')
    if (!hostText.startsWith('*.') || hostText.indexOf('*', 1) !== -1) {
      return fail(`wildcards are allowed only as the whole leftmost label (*.example.com); ${JSON.stringify(hostText)} has a * elsewhere`)
    }
    const suffixText = hostText.slice(2)
    if (suffixText.startsWith('[') || suffixText.includes(':')) return fail('wildcards cannot be used with IP addresses')
    const suffix = normalizeHost(suffixText)
    if (suffix === undefined) return fail(`${JSON.stringify(suffixText)} after *. is not a valid host name`)
    if (IPV4.test(suffix)) return fail('wildcards cannot be used with IP addresses')
    const labels = suffix.split('.').length
    if (labels < 2) {
      // The text as written, not its normalised form: config errors hide interpolated values by matching them.
      return fail(`*.${suffixText} is too broad: it would match every host under ${JSON.stringify(suffixText)}; a wildcard needs at least two labels after it (*.example.com)`)
    }
    if (isPublicSuffix(suffix)) {
      return fail(`*.${suffixText} is too broad: ${suffixText} is a public or shared-hosting suffix (Public Suffix List) where anyone can register a name; bind the credential to your own names under it`)
    }
    const below = publicSuffixBelow(suffix)
    if (below !== undefined) {
      return fail(`*.${suffixText} is too broad: public or shared-hosting suffixes lie under it (Public Suffix List, e.g. ${below}) and a wildcard matches names at every depth; bind the credential to your own names`)
    }
    return { ok: true, pattern: { source: input, host: suffix, wildcard: true, port } }
  }

  const host = normalizeHost(hostText)
  if (host === undefined) return fail(`${JSON.stringify(hostText)} is not a valid host name or IP address`)
  return { ok: true, pattern: { source: input, host, wildcard: false, port } }
}

function patternPort(text: string): number | '*' | { ok: false; message: string } {
  if (text === '*') return '*'
  if (text === '') return fail('empty port after ":"; write host:8443, host:* or no port at all (443 for TLS, 80 for plain)')
  const p = parsePort(text)
  return p ?? fail(`port ${JSON.stringify(text)} must be a number from 1 to 65535, or *`)
}

function fail(message: string): { ok: false; message: string } {
  return { ok: false, message }
}

/** Whether a pattern's port part admits this connection. */
function portMatches(p: HostPattern['port'], port: number, tls: boolean): boolean {
  if (p === '*') return true
  if (p === 'default') return port === (tls ? 443 : 80)
  return p === port
}

/** Whether `host` is a strict subdomain of `suffix` (at least one more label), without allocating. */
export function isStrictSubdomain(host: string, suffix: string): boolean {
  const cut = host.length - suffix.length - 1
  return cut > 0 && host.charCodeAt(cut) === 0x2e /* . */ && host.endsWith(suffix)
}

/** `host` must already be normalised (normalizeHost). */
export function patternMatches(p: HostPattern, host: string, port: number, tls: boolean): boolean {
  if (!portMatches(p.port, port, tls)) return false
  return p.wildcard ? isStrictSubdomain(host, p.host) : host === p.host
}

/** True when some host:port (under TLS or plain) could match both patterns. */
export function patternsOverlap(a: HostPattern, b: HostPattern): boolean {
  return portsOverlap(a.port, b.port) && hostsOverlap(a, b)
}

function portsOverlap(a: HostPattern['port'], b: HostPattern['port']): boolean {
  if (a === '*' || b === '*') return true
  if (a === 'default' && b === 'default') return true
  // 'default' admits 443 under TLS and 80 under plain; an exact port admits itself under both.
  if (a === 'default') return b === 443 || b === 80
  if (b === 'default') return a === 443 || a === 80
  return a === b
}

function hostsOverlap(a: HostPattern, b: HostPattern): boolean {
  if (!a.wildcard && !b.wildcard) return a.host === b.host
  if (a.wildcard && !b.wildcard) return isStrictSubdomain(b.host, a.host)
  if (!a.wildcard && b.wildcard) return isStrictSubdomain(a.host, b.host)
  // Two wildcards share hosts when one suffix equals or lies under the other.
  return a.host === b.host || isStrictSubdomain(a.host, b.host) || isStrictSubdomain(b.host, a.host)
}
