import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { CredentialMatcher, findOverlaps, type MatcherEntry } from '../src/binding/credential-matcher.ts'
import { normalizeHost, parseHostPattern, patternMatches, patternsOverlap, sameAuthority, splitHostPort, type HostPattern } from '../src/binding/host-pattern.ts'

function pattern(text: string): HostPattern {
  const r = parseHostPattern(text)
  if (!r.ok) throw new Error(`expected ${text} to parse: ${r.message}`)
  return r.pattern
}

function refusal(text: string): string {
  const r = parseHostPattern(text)
  assert.equal(r.ok, false, `expected ${JSON.stringify(text)} to be refused`)
  return (r as { message: string }).message
}

function entry(name: string, ...hosts: string[]): MatcherEntry<string> {
  return { name, patterns: hosts.map(pattern), value: name }
}

describe('normalizeHost', () => {
  const cases: Array<[string, string | undefined]> = [
    ['example.com', 'example.com'],
    ['EXAMPLE.com.', 'example.com'],
    ['Example.COM', 'example.com'],
    ['example.com..', undefined],
    ['.example.com', undefined],
    ['a..example.com', undefined],
    ['xn--nxasmq6b.com', 'xn--nxasmq6b.com'],
    ['XN--NXASMQ6B.COM', 'xn--nxasmq6b.com'],
    ['bücher.de', 'xn--bcher-kva.de'],
    ['ｅｘａｍｐｌｅ.com', 'example.com'],
    ['a。example.com', 'a.example.com'],
    ['example.com%2e', undefined],
    ['ex%61mple.com', undefined],
    ['[::ffff:127.0.0.1]', '[::ffff:7f00:1]'],
    ['[0:0:0:0:0:0:0:1]', '[::1]'],
    ['::1', '[::1]'],
    ['[fe80::1%eth0]', undefined],
    ['[fe80::1%25eth0]', undefined],
    ['[::1', undefined],
    ['0177.0.0.1', '127.0.0.1'],
    ['2130706433', '127.0.0.1'],
    ['0x7f.1', '127.0.0.1'],
    ['127.1', '127.0.0.1'],
    ['1.2.3.4.', '1.2.3.4'],
    ['999.1.1.1', undefined],
    ['a.1', undefined],
    ['localhost', 'localhost'],
    ['my_service.internal', 'my_service.internal'],
    ['', undefined],
    [' example.com', undefined],
    ['exa mple.com', undefined],
    ['exa\tmple.com', undefined],
    ['example.com\n', undefined],
    ['user@example.com', undefined],
    ['example.com/path', undefined],
    ['example.com\\path', undefined],
    ['example.com?x', undefined],
    ['example.com#x', undefined],
    ['example.com:443', undefined],
    ['a!b.com', undefined],
    ['ｅｘａｍｐｌｅ／.com', undefined],
    ['*.example.com', undefined],
    ['a'.repeat(63) + '.com', 'a'.repeat(63) + '.com'],
    ['a'.repeat(64) + '.com', undefined],
    [Array.from({ length: 60 }, () => 'abcd').join('.'), undefined],
  ]
  for (const [input, expected] of cases) {
    it(`normalises ${JSON.stringify(input)} to ${JSON.stringify(expected)}`, () => {
      assert.equal(normalizeHost(input), expected)
    })
  }

  it('gives the same answer as the WHATWG URL parser for a URL hostname, minus one trailing dot', () => {
    for (const h of ['Example.COM.', '0x7f.1', 'bücher.de', '[::ffff:127.0.0.1]', 'a-b_c.example']) {
      const viaUrl = new URL(`http://${h}/`).hostname.replace(/\.$/, '')
      assert.equal(normalizeHost(h), viaUrl)
    }
  })
})

describe('splitHostPort', () => {
  it('splits host and port, keeping IPv6 brackets', () => {
    assert.deepEqual(splitHostPort('example.com'), { host: 'example.com', port: undefined })
    assert.deepEqual(splitHostPort('example.com:8443'), { host: 'example.com', port: 8443 })
    assert.deepEqual(splitHostPort('[::1]'), { host: '[::1]', port: undefined })
    assert.deepEqual(splitHostPort('[::1]:443'), { host: '[::1]', port: 443 })
  })
  it('refuses malformed authorities', () => {
    for (const a of ['', ':443', 'example.com:', 'example.com:0', 'example.com:65536', 'example.com:+1', 'example.com:1e3', 'example.com: 80', 'example.com:80:80', '::1', '[::1', '[::1]x', '[::1]:', '[]:80', 'example.com:123456']) {
      assert.equal(splitHostPort(a), undefined, JSON.stringify(a))
    }
  })
})

describe('sameAuthority', () => {
  it('reads an empty port as the default port and ignores leading zeros, on normalised hosts', () => {
    assert.equal(sameAuthority('basic.lk.test:', 'basic.lk.test', 80, 80), true)
    assert.equal(sameAuthority('Basic.LK.test.:', 'basic.lk.test', 80, 80), true)
    assert.equal(sameAuthority('basic.lk.test:0080', 'basic.lk.test', 80, 80), true)
    assert.equal(sameAuthority('basic.lk.test:000000008443', 'basic.lk.test', 8443, 80), true)
    assert.equal(sameAuthority('[::1]:', '[::1]', 443, 443), true)
    assert.equal(sameAuthority('[0::1]:0443', '[::1]', 443, 443), true)
    assert.equal(sameAuthority('basic.lk.test', 'basic.lk.test', 80, 80), true)
  })

  it('still tells different destinations, bad ports and IPv6 literals ending in 0 apart', () => {
    assert.equal(sameAuthority('basic.lk.test:', 'basic.lk.test', 443, 80), false)
    assert.equal(sameAuthority('basic.lk.test:000', 'basic.lk.test', 80, 80), false)
    assert.equal(sameAuthority('basic.lk.test:0x50', 'basic.lk.test', 80, 80), false)
    assert.equal(sameAuthority('basic.lk.test::', 'basic.lk.test', 80, 80), false)
    assert.equal(sameAuthority('other.lk.test:80', 'basic.lk.test', 80, 80), false)
    assert.equal(sameAuthority('[2001:db8::1:0]', '[2001:db8::1:0]', 443, 443), true)
    assert.equal(sameAuthority('[2001:db8::1:0]', '[2001:db8::1]', 443, 443), false)
    assert.equal(sameAuthority('2001:db8::1:80', '[2001:db8::1]', 80, 80), false)
  })
})

describe('parseHostPattern', () => {
  it('parses hosts, wildcards, ports and IP literals into normalised form', () => {
    assert.deepEqual(pattern('api.example.com'), { source: 'api.example.com', host: 'api.example.com', wildcard: false, port: 'default' })
    assert.deepEqual(pattern('*.Example.COM.'), { source: '*.Example.COM.', host: 'example.com', wildcard: true, port: 'default' })
    assert.deepEqual(pattern('warehouse.example.com:8443'), { source: 'warehouse.example.com:8443', host: 'warehouse.example.com', wildcard: false, port: 8443 })
    assert.deepEqual(pattern('*.example.com:*'), { source: '*.example.com:*', host: 'example.com', wildcard: true, port: '*' })
    assert.equal(pattern('0x7f.1:8080').host, '127.0.0.1')
    assert.equal(pattern('[0::1]:8443').host, '[::1]')
    assert.equal(pattern('bücher.example').host, 'xn--bcher-kva.example')
    assert.equal(pattern('localhost:*').host, 'localhost')
  })

  it('refuses wildcards that are not the whole leftmost label, and says why', () => {
    for (const p of ['mlflow-*', 'mlflow-*.example.com', 'api.*.com', '*.*.example.com', '**.example.com', 'a*.example.com', 'example.*']) {
      assert.match(refusal(p), /only as the whole leftmost label/, p)
    }
  })

  it('refuses a bare * as matching every host', () => {
    assert.match(refusal('*'), /bare \* would match every host/)
    assert.match(refusal('*:443'), /bare \* would match every host/)
  })

  it('refuses a wildcard over a single label or a public / shared-hosting suffix as too broad', () => {
    assert.match(refusal('*.com'), /too broad.*at least two labels/)
    assert.match(refusal('*.localhost'), /too broad/)
    assert.match(refusal('*.co.uk'), /public or shared-hosting suffix/)
    assert.match(refusal('*.herokuapp.com'), /public or shared-hosting suffix/)
    assert.match(refusal('*.s3.amazonaws.com'), /public or shared-hosting suffix/)
    assert.equal(pattern('*.svc.cluster.local').host, 'svc.cluster.local')
  })

  it('refuses a wildcard directly over any Public Suffix List entry, ICANN or private, and keeps ordinary domains', () => {
    for (const p of ['*.co.th', '*.com.vn', '*.s3.us-east-2.amazonaws.com', '*.pythonanywhere.com', '*.github.io', '*.CO.TH.', '*.公司.cn']) {
      assert.match(refusal(p), /too broad: .* is a public or shared-hosting suffix \(Public Suffix List\)/, p)
    }
    for (const p of ['*.example.com', '*.example.co.th', '*.wild.lk.test', '*.mybucket.s3.us-east-2.amazonaws.com', '*.corp.internal', '*.vault.azure.net']) {
      assert.equal(pattern(p).wildcard, true, p)
    }
  })

  it('refuses a wildcard over a domain that public suffixes lie under (it matches every depth), naming one of them', () => {
    assert.match(refusal('*.amazonaws.com'), /too broad: public or shared-hosting suffixes lie under it \(Public Suffix List, e\.g\. [a-z0-9.-]+\.amazonaws\.com\)/)
    assert.match(refusal('*.us-east-2.amazonaws.com'), /lie under it .*\.us-east-2\.amazonaws\.com/)
    assert.match(refusal('*.windows.net'), /lie under it/)
  })

  it('refuses wildcards with IP addresses', () => {
    assert.match(refusal('*.0.0.1'), /IP addresses/)
    assert.match(refusal('*.10.0.0.1'), /IP addresses/)
    assert.match(refusal('*.[::1]'), /IP addresses/)
  })

  it('refuses scheme, userinfo, path, query, fragment and percent-encoding, each with its own reason', () => {
    assert.match(refusal('https://example.com'), /no scheme/)
    assert.match(refusal('HTTP://example.com:80'), /no scheme/)
    assert.match(refusal('user@example.com'), /userinfo/)
    assert.match(refusal('user:pass@example.com'), /userinfo/)
    assert.match(refusal('example.com/api'), /no path/)
    assert.match(refusal('example.com\\api'), /no path/)
    assert.match(refusal('example.com?x=1'), /no query/)
    assert.match(refusal('example.com#top'), /no fragment/)
    assert.match(refusal('example.com%2e'), /percent-encoding/)
    assert.match(refusal('example .com'), /spaces/)
  })

  it('refuses bad ports, bad hosts and unbracketed IPv6', () => {
    assert.match(refusal('example.com:'), /empty port/)
    assert.match(refusal('example.com:0'), /1 to 65535/)
    assert.match(refusal('example.com:70000'), /1 to 65535/)
    assert.match(refusal('example.com:https'), /1 to 65535/)
    assert.match(refusal(':443'), /no host/)
    assert.match(refusal('::1'), /brackets/)
    assert.match(refusal('[::1'), /unterminated/)
    assert.match(refusal('[::1]443'), /only :port/)
    assert.match(refusal('example.com..'), /not a valid host/)
    assert.match(refusal('999.1.1.1'), /not a valid host/)
    assert.match(refusal(''), /empty/)
  })
})

describe('patternMatches', () => {
  it('matches an exact host on the default port of the connection scheme only', () => {
    const p = pattern('a.example.com')
    assert.equal(patternMatches(p, 'a.example.com', 443, true), true)
    assert.equal(patternMatches(p, 'a.example.com', 80, false), true)
    assert.equal(patternMatches(p, 'a.example.com', 80, true), false)
    assert.equal(patternMatches(p, 'a.example.com', 443, false), false)
    assert.equal(patternMatches(p, 'a.example.com', 8443, true), false)
  })

  it('matches an explicit port exactly, under TLS or plain', () => {
    const p = pattern('a.example.com:443')
    assert.equal(patternMatches(p, 'a.example.com', 443, true), true)
    assert.equal(patternMatches(p, 'a.example.com', 443, false), true)
    assert.equal(patternMatches(p, 'a.example.com', 80, false), false)
    const any = pattern('a.example.com:*')
    assert.equal(patternMatches(any, 'a.example.com', 1, false), true)
    assert.equal(patternMatches(any, 'a.example.com', 65535, true), true)
  })

  it('matches a wildcard on subdomains at any depth, never the apex nor look-alike hosts', () => {
    const p = pattern('*.example.com')
    for (const h of ['a.example.com', 'a.b.example.com', 'xn--bcher-kva.example.com']) assert.equal(patternMatches(p, h, 443, true), true, h)
    for (const h of ['example.com', 'example.com.evil.net', 'evil-example.com', 'aexample.com', 'a.example.co', 'a.example.com.evil.net', 'com']) {
      assert.equal(patternMatches(p, h, 443, true), false, h)
    }
  })

  it('never matches a hostile spelling once the host is normalised the way the connection is', () => {
    const p = pattern('127.0.0.1:8080')
    for (const h of ['0177.0.0.1', '2130706433', '0x7f.1', '127.1']) assert.equal(patternMatches(p, normalizeHost(h) as string, 8080, false), true, h)
    // IPv4-mapped IPv6 is a different literal: not matched (the safe direction).
    assert.equal(patternMatches(p, normalizeHost('[::ffff:127.0.0.1]') as string, 8080, false), false)
    const q = pattern('example.com')
    assert.equal(normalizeHost('example.com%2e'), undefined)
    assert.equal(patternMatches(q, normalizeHost('EXAMPLE.com.') as string, 443, true), true)
    assert.equal(patternMatches(q, normalizeHost('ｅｘａｍｐｌｅ.com') as string, 443, true), true)
  })
})

describe('patternsOverlap', () => {
  const cases: Array<[string, string, boolean]> = [
    ['a.example.com', 'a.example.com', true],
    ['a.example.com', 'A.example.com.', true],
    ['a.example.com', 'b.example.com', false],
    ['*.example.com', 'a.example.com', true],
    ['*.example.com', 'example.com', false],
    ['*.example.com', '*.a.example.com', true],
    ['*.a.example.com', '*.b.example.com', false],
    ['*.example.com', '*.example.com:8443', false],
    ['*.example.com', '*.example.com:443', true],
    ['a.example.com', 'a.example.com:80', true],
    ['a.example.com', 'a.example.com:8080', false],
    ['a.example.com:*', 'a.example.com:8080', true],
    ['a.example.com:8080', 'a.example.com:8081', false],
    ['*.example.com', 'example.com.evil.net', false],
    ['127.0.0.1', '0x7f.1', true],
  ]
  for (const [a, b, expected] of cases) {
    it(`says ${a} and ${b} ${expected ? 'overlap' : 'do not overlap'}`, () => {
      assert.equal(patternsOverlap(pattern(a), pattern(b)), expected)
      assert.equal(patternsOverlap(pattern(b), pattern(a)), expected)
    })
  }
})

describe('CredentialMatcher', () => {
  const matcher = new CredentialMatcher([
    entry('mlflow', 'mlflow.example.com'),
    entry('search', '*.search.example.com'),
    entry('warehouse', 'warehouse.example.com:8443'),
    entry('deep', '*.x.search.example.com'),
    entry('local', '127.0.0.1:*', '[::1]:9000'),
  ])

  it('returns the credential bound to a host:port:tls and nothing for any other destination', () => {
    assert.equal(matcher.match('mlflow.example.com', 443, true)?.name, 'mlflow')
    assert.equal(matcher.match('mlflow.example.com', 80, false)?.name, 'mlflow')
    assert.equal(matcher.match('mlflow.example.com', 8443, true), undefined)
    assert.equal(matcher.match('a.search.example.com', 443, true)?.name, 'search')
    assert.equal(matcher.match('a.b.search.example.com', 443, true)?.name, 'search')
    assert.equal(matcher.match('search.example.com', 443, true), undefined)
    assert.equal(matcher.match('warehouse.example.com', 8443, true)?.name, 'warehouse')
    assert.equal(matcher.match('warehouse.example.com', 443, true), undefined)
    assert.equal(matcher.match('127.0.0.1', 5, false)?.name, 'local')
    assert.equal(matcher.match('[::1]', 9000, true)?.name, 'local')
    assert.equal(matcher.match('[::1]', 9001, true), undefined)
    assert.equal(matcher.match('example.com.evil.net', 443, true), undefined)
    assert.equal(matcher.match('mlflow.example.com.evil.net', 443, true), undefined)
    assert.equal(matcher.match('evil-mlflow.example.com', 443, true), undefined)
  })

  it('prefers the most specific wildcard when overlaps were not checked', () => {
    assert.equal(matcher.match('y.x.search.example.com', 443, true)?.name, 'deep')
  })

  it('answers the same from its memo as on the first lookup', () => {
    for (let i = 0; i < 3; i++) {
      assert.equal(matcher.match('q.search.example.com', 443, true)?.name, 'search')
      assert.equal(matcher.match('q.search.example.com', 80, true), undefined)
      assert.equal(matcher.match('nothing.example.org', 443, true), undefined)
    }
  })

  it('stays correct after more distinct hosts than its memo holds', () => {
    for (let i = 0; i < 12_000; i++) matcher.match(`h${i}.search.example.com`, 443, i % 2 === 0)
    assert.equal(matcher.match('h1.search.example.com', 443, true)?.name, 'search')
    assert.equal(matcher.match('h1.search.example.com', 443, false), undefined)
  })

  it('stays correct when one host is asked about more ports than its memo row holds', () => {
    const m = new CredentialMatcher([entry('w', 'warehouse.example.com:8443')])
    for (let port = 1; port <= 200; port++) {
      for (const tls of [true, false]) assert.equal(m.match('warehouse.example.com', port, tls)?.name, port === 8443 ? 'w' : undefined)
    }
    assert.equal(m.match('warehouse.example.com', 8443, false)?.name, 'w')
  })

  it('matches nothing when built with no entries (default deny)', () => {
    assert.equal(new CredentialMatcher([]).match('example.com', 443, true), undefined)
  })
})

describe('findOverlaps', () => {
  it('reports every overlapping pattern pair between two credentials, by name and pattern text', () => {
    const found = findOverlaps([entry('a', 'x.example.com', 'other.example.org'), entry('b', '*.example.com'), entry('c', 'X.EXAMPLE.COM:443')])
    assert.deepEqual(found, [
      { a: 'a', b: 'b', patternA: 'x.example.com', patternB: '*.example.com' },
      { a: 'a', b: 'c', patternA: 'x.example.com', patternB: 'X.EXAMPLE.COM:443' },
      { a: 'b', b: 'c', patternA: '*.example.com', patternB: 'X.EXAMPLE.COM:443' },
    ])
  })

  it('does not report a credential overlapping itself, nor disjoint ports', () => {
    assert.deepEqual(findOverlaps([entry('a', '*.example.com', 'x.example.com'), entry('b', 'x.example.com:8443')]), [])
  })
})
