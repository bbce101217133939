import type dns from 'node:dns'
import type { LookupAddress } from 'node:dns'
import { isIP } from 'node:net'
import { rootCertificates } from 'node:tls'
import { Agent } from 'undici'
import { LatchkeyError } from '../errors.ts'
import { systemLookup, type LookupFunction } from './dns-lookup.ts'

export interface UpstreamOptions {
  /** Extra CA PEM on top of the default store. */
  ca: string | undefined
  connectTimeoutMs: number
  requestTimeoutMs: number
  allowLinkLocal: boolean
  /** Name resolution (default: the shared c-ares resolver, which never blocks the thread pool). */
  lookup?: LookupFunction
}

/** Link-local ranges and well-known metadata addresses (T10). */
export function isLinkLocal(address: string): boolean {
  const v = isIP(address)
  if (v === 4) return address.startsWith('169.254.')
  if (v === 6) {
    const a = address.toLowerCase()
    if (/^fe[89ab][0-9a-f]:/.test(a)) return true
    if (a === 'fd00:ec2::254') return true
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a)
    return mapped !== null && (mapped[1] as string).startsWith('169.254.')
  }
  return false
}

/** A name that resolves only to link-local addresses: refused with the registry's code. */
class LinkLocalError extends LatchkeyError {
  constructor(hostname: string) {
    super('link_local_denied', `${hostname} resolves only to link-local addresses; refused (upstream.allowLinkLocal)`)
  }
}

/** A lookup that refuses link-local answers, so a name cannot resolve its way to a metadata service. */
export const guardedLookup: LookupFunction = refuseLinkLocal(systemLookup)

/** Name resolution for destinations no credential is bound to: link-local answers refused unless allowed. */
export function passthroughLookup(lookup: LookupFunction | undefined, allowLinkLocal: boolean): LookupFunction {
  if (lookup === undefined) return allowLinkLocal ? systemLookup : guardedLookup
  return allowLinkLocal ? lookup : refuseLinkLocal(lookup)
}

export function refuseLinkLocal(lookup: LookupFunction): LookupFunction {
  return (hostname: string, options: dns.LookupOptions, callback) => lookup(hostname, { ...options, all: true }, (err, found) => {
    const addresses = found as LookupAddress[]
    if (err) return callback(err, [])
    const ok = addresses.filter((a) => !isLinkLocal(a.address))
    if (ok.length === 0) return callback(new LinkLocalError(hostname), [])
    if (options.all) return callback(null, ok)
    const first = ok[0] as LookupAddress
    callback(null, first.address, first.family)
  })
}

/**
 * Two pooled keep-alive agents: one for credentialed destinations (verified TLS with the
 * extra CA), one for passthrough (also refusing link-local addresses unless allowed).
 */
export function createUpstreamAgents(o: UpstreamOptions): { credentialed: Agent; passthrough: Agent } {
  return {
    credentialed: credentialedAgent(o),
    passthrough: upstreamAgent(o, passthroughLookup(o.lookup, o.allowLinkLocal)),
  }
}

/**
 * The agent credentialed requests go out on, in the daemon and in the in-process shim alike:
 * verified TLS with the extra CA, names resolved by the shared resolver (never libuv's pool).
 */
export function credentialedAgent(o: Omit<UpstreamOptions, 'allowLinkLocal'>): Agent {
  return upstreamAgent(o, o.lookup ?? systemLookup)
}

function upstreamAgent(o: Omit<UpstreamOptions, 'allowLinkLocal' | 'lookup'>, lookup: LookupFunction): Agent {
  const ca = o.ca ? [...rootCertificates, o.ca] : undefined
  // Explicit: an embedding process (exec, the shim) that switches verification off through its environment must not affect us (T4).
  return new Agent({
    headersTimeout: o.requestTimeoutMs,
    bodyTimeout: o.requestTimeoutMs,
    keepAliveTimeout: 30_000,
    connections: 256,
    connect: { timeout: o.connectTimeoutMs, rejectUnauthorized: true, ...(ca ? { ca } : {}), lookup },
  })
}
