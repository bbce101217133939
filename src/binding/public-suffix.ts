/**
 * The Public Suffix List (ICANN and private sections), from tldts, for the wildcard breadth
 * rule in host-pattern.ts. tldts is loaded on the first question, so a config without a
 * wildcard never pays for the list (see bench/psl-load.ts for what it costs).
 */
import { createRequire } from 'node:module'

type PublicSuffixOf = (host: string, options: { allowPrivateDomains: boolean }) => string | null

/** tldts' own flat trie of the list's rules (right-to-left labels), as its lookup reads it. */
interface RuleTrie {
  nodeFlags: Uint8Array
  edgeStart: ArrayLike<number>
  edgeLength: ArrayLike<number>
  edgeChild: ArrayLike<number>
  labelText: string
  rulesRoot: number
}

const require = createRequire(import.meta.url)
let publicSuffixOf: PublicSuffixOf | undefined
let trie: (RuleTrie & { edgeOffset: Uint32Array }) | undefined

/**
 * Whether `name` (normalised) is itself on the list: `co.th`, `s3.us-east-2.amazonaws.com`,
 * `pythonanywhere.com`. A name under a TLD the list does not know falls under its default `*`
 * rule: only the TLD is public.
 */
export function isPublicSuffix(name: string): boolean {
  publicSuffixOf ??= (require('tldts') as { getPublicSuffix: PublicSuffixOf }).getPublicSuffix
  return publicSuffixOf(name, { allowPrivateDomains: true }) === name
}

/**
 * A rule of the list that lies strictly under `name`, if any (`s3.amazonaws.com` under
 * `amazonaws.com`): a wildcard matches names at every depth, so `*.amazonaws.com` would also
 * match names that strangers register under that suffix. tldts answers only "what is the
 * suffix of this host", so this walks the rule trie its lookup uses (the version is pinned
 * in package.json; test/host-binding.test.ts fails if the layout changes).
 */
export function publicSuffixBelow(name: string): string | undefined {
  const t = (trie ??= loadTrie())
  let node = t.rulesRoot
  const labels = name.split('.').reverse()
  for (const label of labels) {
    const next = child(t, node, label) ?? child(t, node, '*')
    if (next === undefined) return undefined
    node = next
  }
  const below = firstRule(t, node)
  return below === undefined ? undefined : `${below}.${name}`
}

function loadTrie(): RuleTrie & { edgeOffset: Uint32Array } {
  const t = require('tldts/dist/cjs/src/data/trie.js') as RuleTrie
  if (!(t.nodeFlags instanceof Uint8Array) || typeof t.labelText !== 'string' || typeof t.rulesRoot !== 'number') {
    throw new Error('tldts rule trie has an unexpected layout; check the tldts version pinned in package.json')
  }
  // Labels are stored back to back in edge order; each edge's start is the sum of the lengths before it.
  const edgeOffset = new Uint32Array(t.edgeLength.length)
  for (let e = 0, offset = 0; e < t.edgeLength.length; e++) {
    edgeOffset[e] = offset
    offset += t.edgeLength[e] as number
  }
  return { ...t, edgeOffset }
}

function child(t: RuleTrie & { edgeOffset: Uint32Array }, node: number, label: string): number | undefined {
  for (let e = t.edgeStart[node] as number; e < (t.edgeStart[node + 1] as number); e++) {
    if (t.edgeLength[e] === label.length && t.labelText.startsWith(label, t.edgeOffset[e])) return t.edgeChild[e]
  }
  return undefined
}

/** The labels (left of `node`'s name) of the first rule found under it, depth first. */
function firstRule(t: RuleTrie & { edgeOffset: Uint32Array }, node: number): string | undefined {
  for (let e = t.edgeStart[node] as number; e < (t.edgeStart[node + 1] as number); e++) {
    const label = t.labelText.slice(t.edgeOffset[e], (t.edgeOffset[e] as number) + (t.edgeLength[e] as number))
    const c = t.edgeChild[e] as number
    if ((t.nodeFlags[c] as number) !== 0) return label
    const deeper = firstRule(t, c)
    if (deeper !== undefined) return `${deeper}.${label}`
  }
  return undefined
}
