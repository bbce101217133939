import { LRUCache } from 'lru-cache'
import { patternMatches, patternsOverlap, type HostPattern } from './host-pattern.ts'

export interface MatcherEntry<T> {
  name: string
  patterns: readonly HostPattern[]
  value: T
}

interface Slot<T> {
  readonly pattern: HostPattern
  readonly entry: MatcherEntry<T>
}

/** lru-cache cannot hold `undefined`; a miss is memoised as this marker. */
const NO_MATCH = Symbol('no-match')

/** Distinct hosts remembered; request hosts are attacker-chosen, so the memo is bounded. */
const MEMO_MAX = 10_000
/** Distinct port:tls answers remembered per host before that host's row is reset (ports are attacker-chosen too). */
const PORTS_PER_HOST = 64

/**
 * Host → credential, precompiled at start. Exact hosts sit in a Map, wildcard suffixes in a
 * Map by suffix, so a lookup costs one Map probe per label of the host; results are memoised
 * per host, then per port and TLS. Exact patterns win over wildcards, and a longer wildcard suffix over a
 * shorter one, so the answer is deterministic even for a matcher built without the load-time
 * overlap check (`findOverlaps`).
 */
export class CredentialMatcher<T> {
  readonly #exact = new Map<string, Slot<T>[]>()
  readonly #wildcard = new Map<string, Slot<T>[]>()
  /** host → (port * 2 + tls) → answer. Keyed by the host string itself so a hit builds no key string. */
  readonly #memo = new LRUCache<string, Map<number, MatcherEntry<T> | typeof NO_MATCH>>({ max: MEMO_MAX })

  constructor(entries: readonly MatcherEntry<T>[]) {
    for (const entry of entries) {
      for (const pattern of entry.patterns) {
        const map = pattern.wildcard ? this.#wildcard : this.#exact
        let slots = map.get(pattern.host)
        if (!slots) map.set(pattern.host, (slots = []))
        slots.push({ pattern, entry })
      }
    }
  }

  /** The entry whose pattern admits this destination. `host` must already be normalised. */
  match(host: string, port: number, tls: boolean): MatcherEntry<T> | undefined {
    const key = port * 2 + (tls ? 1 : 0)
    let row = this.#memo.get(host)
    const memo = row?.get(key)
    if (memo !== undefined) return memo === NO_MATCH ? undefined : memo
    const found = this.#lookup(host, port, tls)
    if (row === undefined) this.#memo.set(host, (row = new Map()))
    else if (row.size >= PORTS_PER_HOST) row.clear()
    row.set(key, found ?? NO_MATCH)
    return found
  }

  #lookup(host: string, port: number, tls: boolean): MatcherEntry<T> | undefined {
    const exact = firstMatch(this.#exact.get(host), host, port, tls)
    if (exact) return exact
    if (this.#wildcard.size === 0) return undefined
    // Walk the suffixes after each dot, longest first: a.b.example.com → b.example.com → example.com → com.
    for (let dot = host.indexOf('.'); dot !== -1; dot = host.indexOf('.', dot + 1)) {
      const found = firstMatch(this.#wildcard.get(host.slice(dot + 1)), host, port, tls)
      if (found) return found
    }
    return undefined
  }
}

function firstMatch<T>(slots: Slot<T>[] | undefined, host: string, port: number, tls: boolean): MatcherEntry<T> | undefined {
  if (!slots) return undefined
  for (const slot of slots) if (patternMatches(slot.pattern, host, port, tls)) return slot.entry
  return undefined
}

/**
 * Every pair of patterns, from two different entries, that some host:port could match both
 * of. Each is a config error: a destination must have at most one credential.
 */
export function findOverlaps<T>(entries: readonly MatcherEntry<T>[]): Array<{ a: string; b: string; patternA: string; patternB: string }> {
  const out: Array<{ a: string; b: string; patternA: string; patternB: string }> = []
  for (let i = 0; i < entries.length; i++) {
    const ea = entries[i] as MatcherEntry<T>
    for (let j = i + 1; j < entries.length; j++) {
      const eb = entries[j] as MatcherEntry<T>
      for (const pa of ea.patterns) {
        for (const pb of eb.patterns) {
          if (patternsOverlap(pa, pb)) out.push({ a: ea.name, b: eb.name, patternA: pa.source, patternB: pb.source })
        }
      }
    }
  }
  return out
}
