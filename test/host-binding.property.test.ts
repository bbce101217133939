/**
 * Property tests for host binding (threat T1): over generated patterns and hostile host
 * spellings, the precompiled matcher never picks a credential that an independently written
 * reference predicate says is not bound to the destination, and overlap detection agrees
 * with brute force over a small universe.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { CredentialMatcher, findOverlaps, type MatcherEntry } from '../src/binding/credential-matcher.ts'
import { normalizeHost, parseHostPattern, patternsOverlap, type HostPattern } from '../src/binding/host-pattern.ts'

// ---------------------------------------------------------------------------------------------
// Reference model: written from design.md, not from the implementation. Hosts are compared as
// label arrays; the WHATWG URL parser stands in for "the host the connection goes to".

/** The host a client would connect to, or undefined when latchkey must treat it as invalid. */
function refNormalize(raw: string): string | undefined {
  if (/[%@/\\?#\s]/.test(raw)) return undefined
  // A colon is a port separator to a URL parser: only IPv6 literals may hold one (brackets optional).
  if (raw.includes(':') && !raw.startsWith('[')) raw = `[${raw}]`
  if (raw.includes('[') || raw.includes(']')) {
    if (!raw.startsWith('[') || raw.indexOf(']') !== raw.length - 1) return undefined
  }
  let h: string
  try {
    h = new URL(`http://${raw}/`).hostname
  } catch {
    return undefined
  }
  if (h.endsWith('.')) h = h.slice(0, -1)
  if (h === '' || h.startsWith('.') || h.endsWith('.') || h.includes('..')) return undefined
  if (!/^(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)$/.test(h)) return undefined
  return h
}

interface RefPattern {
  labels: string[]
  wildcard: boolean
  port: number | '*' | 'default'
}

function refParse(source: string): RefPattern | undefined {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(source)
  if (!m) return undefined
  let hostText = m[1] as string
  const portText = m[2]
  let port: RefPattern['port'] = 'default'
  if (portText !== undefined) port = portText === '*' ? '*' : Number(portText)
  const wildcard = hostText.startsWith('*.')
  if (wildcard) hostText = hostText.slice(2)
  const host = refNormalize(hostText)
  if (host === undefined) return undefined
  return { labels: host.startsWith('[') ? [host] : host.split('.'), wildcard, port }
}

function refMatches(p: RefPattern, host: string, port: number, tls: boolean): boolean {
  const portOk = p.port === '*' || (p.port === 'default' ? port === (tls ? 443 : 80) : p.port === port)
  if (!portOk) return false
  const labels = host.startsWith('[') ? [host] : host.split('.')
  if (!p.wildcard) return labels.length === p.labels.length && labels.every((l, i) => l === p.labels[i])
  if (labels.length <= p.labels.length) return false
  const off = labels.length - p.labels.length
  return p.labels.every((l, i) => labels[off + i] === l)
}

// ---------------------------------------------------------------------------------------------
// Generators

const BASES = ['example.com', 'example.net', 'search.example.com', 'example.com.evil.net', 'evil-example.com', 'aexample.com', 'bücher.example', 'xn--bcher-kva.example', 'svc.cluster.local']
const IPS = ['127.0.0.1', '0x7f.1', '2130706433', '0177.0.0.1', '127.1', '10.0.0.1', '[::1]', '[0:0::1]', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]']
const PREFIX_LABELS = ['a', 'b', 'x', 'example', 'com', 'evil']
const PORT_SUFFIXES = ['', '', ':443', ':80', ':8443', ':*']

const domain = fc.tuple(fc.array(fc.constantFrom(...PREFIX_LABELS), { maxLength: 2 }), fc.constantFrom(...BASES)).map(([pre, base]) => [...pre, base].join('.'))

const FULLWIDTH_OFFSET = 0xff21 - 0x41
/** Hostile re-spellings of a host: case, trailing dots, fullwidth letters, percent-encoding, userinfo. */
function respell(host: string, mask: boolean[], trailing: string, mode: number): string {
  let out = ''
  for (let i = 0; i < host.length; i++) {
    const ch = host[i] as string
    const flip = mask[i % Math.max(mask.length, 1)] === true
    if (flip && mode === 1 && /[a-z]/.test(ch)) out += String.fromCharCode(ch.toUpperCase().charCodeAt(0) + FULLWIDTH_OFFSET)
    else out += flip ? ch.toUpperCase() : ch
  }
  if (mode === 2) out = out.replace('.', '%2e')
  if (mode === 3) out = 'user@' + out
  if (mode === 4) out = out.replace('.', '。')
  return out.startsWith('[') ? out : out + trailing
}

const rawHost = fc
  .tuple(fc.oneof({ weight: 4, arbitrary: domain }, { weight: 1, arbitrary: fc.constantFrom(...IPS) }), fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }), fc.constantFrom('', '', '', '.', '..'), fc.constantFrom(0, 0, 0, 0, 1, 2, 3, 4))
  .map(([h, mask, trailing, mode]) => respell(h, mask, trailing, mode))

const patternText = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(domain, fc.constantFrom(...PORT_SUFFIXES)).map(([h, p]) => h + p) },
  { weight: 3, arbitrary: fc.tuple(domain, fc.constantFrom(...PORT_SUFFIXES)).map(([h, p]) => `*.${h}${p}`) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...IPS), fc.constantFrom(...PORT_SUFFIXES)).map(([h, p]) => h + p) },
  { weight: 1, arbitrary: fc.tuple(rawHost, fc.constantFrom(...PORT_SUFFIXES)).map(([h, p]) => h + p) },
)

function parsedPatterns(texts: string[]): HostPattern[] {
  const out: HostPattern[] = []
  for (const t of texts) {
    const r = parseHostPattern(t)
    if (r.ok) out.push(r.pattern)
  }
  return out
}

const entriesArb = fc.array(fc.array(patternText, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 4 }).map((lists) =>
  lists.map((texts, i): MatcherEntry<number> => ({ name: `c${i}`, patterns: parsedPatterns(texts), value: i })),
)

const PORTS = [80, 443, 8443, 1234]

/** Entries plus a host that is often close to one of their patterns (same host, one more label, a re-spelling). */
const entriesAndHost = entriesArb.chain((entries) => {
  const near = entries.flatMap((e) => e.patterns.map((p) => p.host))
  const derived =
    near.length === 0
      ? rawHost
      : fc
          .tuple(fc.constantFrom(...near), fc.constantFrom('', 'a.', 'z.', 'a.b.'), fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }), fc.constantFrom('', '', '.', '..'), fc.constantFrom(0, 0, 0, 1, 2, 4))
          .map(([h, pre, mask, trailing, mode]) => respell(h.startsWith('[') ? h : pre + h, mask, trailing, mode))
  return fc.tuple(fc.constant(entries), fc.oneof(rawHost, derived))
})

// ---------------------------------------------------------------------------------------------

describe('host binding properties', () => {
  it('normalises every generated host spelling exactly as the reference does', () => {
    fc.assert(
      fc.property(rawHost, (raw) => {
        assert.equal(normalizeHost(raw), refNormalize(raw), JSON.stringify(raw))
      }),
      { numRuns: 2000 },
    )
  })

  it('takes the fast path for plain ASCII names only when it gives the same answer as the URL parser', () => {
    const chars = fc.constantFrom('a', 'B', 'x', 'X', 'n', 'N', 'f', '0', '1', '9', '-', '_', '.', '.', 'é', ':', '[', ']')
    fc.assert(
      fc.property(fc.array(chars, { minLength: 1, maxLength: 16 }).map((cs) => cs.join('')), (raw) => {
        assert.equal(normalizeHost(raw), refNormalize(raw), JSON.stringify(raw))
      }),
      { numRuns: 5000 },
    )
  })

  it('never returns a credential for a destination its patterns do not match under the reference predicate', () => {
    const seen = { matched: 0, unmatched: 0, invalid: 0 }
    fc.assert(
      fc.property(entriesAndHost, fc.constantFrom(...PORTS), fc.boolean(), ([entries, raw], port, tls) => {
        const host = normalizeHost(raw)
        if (host === undefined) {
          seen.invalid++
          return // refused before matching (invalid_host)
        }
        const matcher = new CredentialMatcher(entries)
        const got = matcher.match(host, port, tls)
        const refMatching = entries.filter((e) => e.patterns.some((p) => refMatches(refParse(p.source) as RefPattern, host, port, tls)))
        if (got === undefined) {
          assert.equal(refMatching.length, 0, `no match for ${host}:${port}:${tls} but the reference matches ${refMatching.map((e) => e.name).join(',')}`)
        } else {
          assert.ok(refMatching.includes(got), `${got.name} chosen for ${host}:${port}:${tls} but its patterns ${got.patterns.map((p) => p.source).join(',')} do not match`)
        }
        // A second (memoised) lookup answers the same.
        assert.equal(matcher.match(host, port, tls), got)
        if (got) seen.matched++
        else seen.unmatched++
      }),
      { numRuns: 3000 },
    )
    // The property is not vacuous: the generators hit matches, misses and invalid spellings.
    for (const [k, n] of Object.entries(seen)) assert.ok(n > 100, `only ${n} ${k} cases`)
  })

  it('refuses every wildcard that is not the whole leftmost label', () => {
    fc.assert(
      fc.property(domain, fc.nat({ max: 40 }), (d, at) => {
        const i = at % (d.length + 1)
        const text = d.slice(0, i) + '*' + d.slice(i)
        const r = parseHostPattern(text)
        if (r.ok) {
          assert.ok(text.startsWith('*.'), `accepted ${text}`)
          assert.equal(r.pattern.wildcard, true)
        }
      }),
      { numRuns: 1000 },
    )
  })

  it('detects overlapping patterns exactly when brute force over a small universe finds a shared destination', () => {
    const simpleDomain = fc.tuple(fc.array(fc.constantFrom('a', 'b'), { maxLength: 1 }), fc.constantFrom('example.com', 'a.example.com', 'example.com.evil.net', 'evil-example.com')).map(([pre, base]) => [...pre, base].join('.'))
    const simplePattern = fc.oneof(
      fc.tuple(simpleDomain, fc.constantFrom('', ':443', ':80', ':8443', ':*')).map(([h, p]) => h + p),
      fc.tuple(simpleDomain, fc.constantFrom('', ':443', ':80', ':8443', ':*')).map(([h, p]) => `*.${h}${p}`),
      fc.tuple(fc.constantFrom('127.0.0.1', '0x7f.1', '[::1]'), fc.constantFrom('', ':443', ':8443', ':*')).map(([h, p]) => h + p),
    )
    // Every host a pattern above could match within two extra labels, plus a label no pattern uses.
    const universe: string[] = ['127.0.0.1', '[::1]']
    for (const base of ['example.com', 'a.example.com', 'example.com.evil.net', 'evil-example.com', 'evil.net', 'com']) {
      universe.push(base)
      for (const l1 of ['a', 'b', 'z']) {
        universe.push(`${l1}.${base}`)
        for (const l2 of ['a', 'z']) universe.push(`${l2}.${l1}.${base}`)
      }
    }
    const ports = [80, 443, 8443, 9999]
    const seen = { overlap: 0, disjoint: 0 }
    fc.assert(
      fc.property(simplePattern, simplePattern, (ta, tb) => {
        const a = parseHostPattern(ta)
        const b = parseHostPattern(tb)
        if (!a.ok || !b.ok) return
        const ra = refParse(ta) as RefPattern
        const rb = refParse(tb) as RefPattern
        let brute = false
        for (const h of universe) {
          for (const port of ports) {
            for (const tls of [true, false]) if (refMatches(ra, h, port, tls) && refMatches(rb, h, port, tls)) brute = true
          }
        }
        assert.equal(patternsOverlap(a.pattern, b.pattern), brute, `${ta} vs ${tb}`)
        const reported = findOverlaps([
          { name: 'a', patterns: [a.pattern], value: 0 },
          { name: 'b', patterns: [b.pattern], value: 1 },
        ])
        assert.equal(reported.length, brute ? 1 : 0)
        seen[brute ? 'overlap' : 'disjoint']++
      }),
      { numRuns: 1500 },
    )
    for (const [k, n] of Object.entries(seen)) assert.ok(n > 100, `only ${n} ${k} cases`)
  })
})
