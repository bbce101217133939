import { createSecureContext, type SecureContext } from 'node:tls'
import { LRUCache } from 'lru-cache'
import type { CertificateAuthority } from './certificate-authority.ts'

/** Leaf certificates backdate their notBefore by a minute (certificate-authority.ts). */
const BACKDATE_MS = 60_000
/** A leaf is renewed once this fraction of its lifetime has passed, so a client never sees one about to expire. */
const RENEW_AT = 0.75

interface Leaf {
  readonly context: SecureContext
  readonly renewAt: number
  readonly expiresAt: number
}

export interface LeafCacheOptions {
  ca: CertificateAuthority
  /** `intercept.leafTtl`. */
  leafTtlMs: number
  /**
   * Hosts remembered. CONNECT hosts are chosen by the client (a wildcard binding admits any
   * number of names), so the cache is bounded; an evicted host costs one issue.
   */
  max?: number
  now?: () => number
}

/**
 * One TLS server context per intercepted host, issued on first use. Concurrent handshakes
 * for a new host share one issue (single flight); a leaf past 3/4 of its lifetime is still
 * served while its successor is issued in the background.
 */
export class LeafCache {
  readonly #ca: CertificateAuthority
  readonly #ttl: number
  readonly #now: () => number
  readonly #leaves: LRUCache<string, Leaf>
  readonly #inflight = new Map<string, Promise<Leaf>>()
  #issued = 0

  constructor(o: LeafCacheOptions) {
    this.#ca = o.ca
    this.#ttl = o.leafTtlMs
    this.#now = o.now ?? Date.now
    this.#leaves = new LRUCache<string, Leaf>({ max: o.max ?? 1000 })
  }

  /** Number of leaves issued so far (tests, bench). */
  get issued(): number {
    return this.#issued
  }

  /** The context for a normalised host (DNS name, IPv4, or `[IPv6]`). */
  async get(host: string): Promise<SecureContext> {
    const now = this.#now()
    const leaf = this.#leaves.get(host)
    if (leaf && now < leaf.expiresAt) {
      if (now >= leaf.renewAt) this.#issue(host).catch(() => undefined) // the current leaf stays valid meanwhile
      return leaf.context
    }
    return (await this.#issue(host)).context
  }

  /** Drop every leaf (tests; after the CA changed). */
  clear(): void {
    this.#leaves.clear()
  }

  #issue(host: string): Promise<Leaf> {
    let p = this.#inflight.get(host)
    if (p) return p
    p = (async () => {
      const issuedAt = this.#now()
      const pair = await this.#ca.issue([host], { lifetimeMs: this.#ttl })
      this.#issued++
      const expiresAt = issuedAt - BACKDATE_MS + this.#ttl
      const leaf: Leaf = {
        context: createSecureContext({ cert: pair.cert, key: pair.key, minVersion: 'TLSv1.2' }),
        renewAt: issuedAt + (expiresAt - issuedAt) * RENEW_AT,
        expiresAt,
      }
      this.#leaves.set(host, leaf)
      return leaf
    })().finally(() => this.#inflight.delete(host))
    this.#inflight.set(host, p)
    return p
  }
}
