import assert from 'node:assert/strict'
import { test } from 'node:test'
import { normalizeRequestPath } from '../../src/policy/request-path.ts'
import { compileRules, decide, type RuleProblem } from '../../src/policy/rules.ts'

const norm = (p: string) => {
  const r = normalizeRequestPath(p)
  return r.ok ? r.path : `!${r.reason}`
}

test('the query is set aside and the fragment dropped; neither is part of the matched path', () => {
  assert.deepEqual(normalizeRequestPath('/a/b?x=/admin#frag'), { ok: true, path: '/a/b', query: '?x=/admin' })
  assert.deepEqual(normalizeRequestPath('/a#?x'), { ok: true, path: '/a', query: '' })
  assert.deepEqual(normalizeRequestPath('?x'), { ok: true, path: '/', query: '?x' })
})

test('encoded unreserved characters are decoded; every other encoding is kept with upper-case hex', () => {
  assert.equal(norm('/%61%62%7e%2d'), '/ab~-')
  assert.equal(norm('/a%2fb'), '/a%2Fb')
  assert.equal(norm('/a%5cb'), '/a%5Cb')
  assert.equal(norm('/a%20b'), '/a%20b')
  assert.equal(norm('/%25'), '/%25')
})

test('characters outside the path grammar are encoded as the bytes they stand for', () => {
  assert.equal(norm('/a b'), '/a%20b')
  assert.equal(norm('/a\\b'), '/a%5Cb')
  // Node hands request-line bytes over as latin1: é in UTF-8 arrives as two characters.
  assert.equal(norm('/\u00c3\u00a9'), '/%C3%A9')
  assert.equal(norm('/a"<>'), '/a%22%3C%3E')
  assert.match(norm('/\u20ac'), /^!.*not a byte/)
})

test('dot-segments are resolved, also when encoded, and climbing above the root is refused', () => {
  assert.equal(norm('/a/./b/../c'), '/a/c')
  assert.equal(norm('/a/b/..'), '/a/')
  assert.equal(norm('/a/.'), '/a/')
  assert.equal(norm('/a/%2e%2E/b'), '/b')
  assert.equal(norm('/a/.%2e/b'), '/b')
  assert.match(norm('/..'), /^!.*above the root/)
  assert.match(norm('/a/../../b'), /^!.*above the root/)
  assert.match(norm('/%2e%2e/etc/passwd'), /^!.*above the root/)
  // `..%2F` is not a dot-segment: the encoded slash stays part of the segment.
  assert.equal(norm('/a/..%2Fb'), '/a/..%2Fb')
})

test('doubled slashes are kept and the path stays case-sensitive', () => {
  assert.equal(norm('/a//b'), '/a//b')
  assert.equal(norm('//a'), '//a')
  assert.equal(norm('/A/b'), '/A/b')
})

test('a broken percent-encoding and a path that does not start with / are refused', () => {
  assert.match(norm('/a%zz'), /^!.*two hex digits/)
  assert.match(norm('/a%2'), /^!.*two hex digits/)
  assert.match(norm('a/b'), /^!.*start with \//)
})

function rules(...list: { methods: string[]; paths: string[] }[]) {
  const problems: RuleProblem[] = []
  const compiled = compileRules(list, 'credentials.x.allow', problems)
  assert.deepEqual(problems, [])
  return compiled
}

test('* matches within one segment, ** zero or more whole segments', () => {
  const r = rules({ methods: ['GET', 'HEAD'], paths: ['/public/**', '/v1/items/*', '/v1/*/meta'] })
  const ok = (m: string, p: string) => decide(r, m, p).allowed
  assert.ok(ok('GET', '/public'))
  assert.ok(ok('GET', '/public/'))
  assert.ok(ok('GET', '/public/a/b/c'))
  assert.ok(!ok('GET', '/publicity'))
  assert.ok(ok('HEAD', '/v1/items/42'))
  assert.ok(!ok('GET', '/v1/items/42/x'))
  assert.ok(!ok('GET', '/v1/items/'.slice(0, -1)))
  assert.ok(ok('GET', '/v1/items/'))
  assert.ok(ok('GET', '/v1/abc/meta'))
  assert.ok(!ok('POST', '/public/a'))
  assert.ok(!ok('get', '/public/a'))
})

test('no wildcard matches an encoded slash or backslash; a glob that spells one out does', () => {
  const r = rules({ methods: ['*'], paths: ['/public/**', '/files/*', '/raw/a%2Fb'] })
  const ok = (p: string) => decide(r, 'GET', p).allowed
  assert.ok(!ok('/public/..%2F..%2Fadmin'))
  assert.ok(!ok('/public/x/..%5Cadmin'))
  assert.ok(!ok('/files/a%2Fb'))
  assert.ok(ok('/files/a%20b'))
  assert.ok(ok('/raw/a%2Fb'))
})

test('the first allowing rule is reported by its index', () => {
  const r = rules({ methods: ['POST'], paths: ['/a'] }, { methods: ['*'], paths: ['/**'] })
  assert.deepEqual(decide(r, 'POST', '/a'), { allowed: true, rule: 0 })
  assert.deepEqual(decide(r, 'DELETE', '/a'), { allowed: true, rule: 1 })
})

test('rules that can never match are reported with their paths', () => {
  const problems: RuleProblem[] = []
  compileRules(
    [
      { methods: [], paths: [] },
      { methods: ['get', 'G E T'], paths: ['public/**', '/a/../b', '/a/%7e', '/a?x=1', '/a/b**', '/%zz'] },
    ],
    'credentials.x.allow',
    problems,
  )
  assert.deepEqual(
    problems.map((p) => p.path),
    [
      'credentials.x.allow[0].methods',
      'credentials.x.allow[0].paths',
      'credentials.x.allow[1].methods[0]',
      'credentials.x.allow[1].methods[1]',
      'credentials.x.allow[1].paths[0]',
      'credentials.x.allow[1].paths[1]',
      'credentials.x.allow[1].paths[2]',
      'credentials.x.allow[1].paths[3]',
      'credentials.x.allow[1].paths[4]',
      'credentials.x.allow[1].paths[5]',
    ],
  )
  assert.match(problems[2]!.message, /did you mean "GET"/)
  assert.match(problems[5]!.message, /write it as "\/b"/)
  assert.match(problems[6]!.message, /write it as "\/a\/~"/)
})

test('a long hostile path is matched in linear time (no backtracking blow-up)', () => {
  const r = rules({ methods: ['*'], paths: ['/*a*a*a*a*a*b', '/**/x/**/y/**/z'] })
  const long = '/' + 'a'.repeat(20_000)
  const deep = '/x'.repeat(5_000)
  const start = process.hrtime.bigint()
  assert.equal(decide(r, 'GET', long).allowed, false)
  assert.equal(decide(r, 'GET', deep).allowed, false)
  // Generous: a backtracking matcher takes minutes here; this only guards the complexity class.
  assert.ok(Number(process.hrtime.bigint() - start) / 1e9 < 10)
})
