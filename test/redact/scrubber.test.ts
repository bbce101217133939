import assert from 'node:assert/strict'
import { inspect } from 'node:util'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { Scrubber } from '../../src/redact/scrubber.ts'
import { assertNoCanary } from '../helpers/log-capture.ts'

const CANARY = 'canary-scrub-4f9e2a7c1d'
const R = '[REDACTED]'

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64')
}

describe('Scrubber', () => {
  test('an empty scrubber returns the text unchanged', () => {
    const s = new Scrubber()
    assert.equal(s.scrub('hello world'), 'hello world')
    assert.equal(s.size, 0)
  })

  test('the raw value is replaced wherever it occurs', () => {
    const s = new Scrubber()
    s.set('cred', [CANARY])
    assert.equal(s.scrub(`a ${CANARY} b ${CANARY}`), `a ${R} b ${R}`)
  })

  for (const [name, encode] of [
    ['base64', (v: string) => b64(v)],
    ['unpadded base64', (v: string) => b64(v).replace(/=+$/, '')],
    ['base64url', (v: string) => Buffer.from(v).toString('base64url')],
    ['encodeURIComponent', (v: string) => encodeURIComponent(v)],
    ['form encoding', (v: string) => new URLSearchParams({ q: v }).toString().slice(2)],
    ['lower-case percent escapes', (v: string) => encodeURIComponent(v).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase())],
    ['JSON escaping', (v: string) => JSON.stringify(v).slice(1, -1)],
    ['JSON escaping twice', (v: string) => JSON.stringify(JSON.stringify(v)).slice(1, -1)],
    ['URL-encoded base64', (v: string) => encodeURIComponent(b64(v))],
  ] as const) {
    test(`the ${name} form is replaced, leaving no trace`, () => {
      // Characters that every encoding treats differently.
      const secret = `${CANARY} +/="\\&é?`
      const s = new Scrubber()
      s.set('cred', [secret])
      const line = `before ${encode(secret)} after`
      const out = s.scrub(line)
      assert.match(out, /^before .*\[REDACTED\].* after$/)
      assertNoCanary(out, [secret])
    })
  }

  test('a value inside a longer base64 blob is removed at each of the three byte alignments', () => {
    const s = new Scrubber()
    s.set('cred', [CANARY])
    for (const prefix of ['', 'x', 'xy', 'xyz']) {
      const blob = b64(`{"auths":{"r":{"auth":"${prefix}${CANARY}"}}}`)
      assertNoCanary(s.scrub(`config ${blob}`), [CANARY])
    }
  })

  test('a user:pass value is removed as base64 (a Basic header) and its password alone too', () => {
    const s = new Scrubber()
    s.set('basic', ['svc-user:canary-pw-77aa31'])
    assert.equal(s.scrub(`Basic ${b64('svc-user:canary-pw-77aa31')}`), `Basic ${R}`)
    assert.equal(s.scrub('password=canary-pw-77aa31'), `password=${R}`)
    assertNoCanary(s.scrub(`auth ${b64('svc-user:canary-pw-77aa31')} and canary-pw-77aa31`), [{ username: 'svc-user', password: 'canary-pw-77aa31' }])
  })

  test('the previous value of a key is still scrubbed after one rotation and forgotten after two', () => {
    const s = new Scrubber()
    s.set('cred', ['value-generation-1'])
    s.set('cred', ['value-generation-2'])
    assert.equal(s.scrub('value-generation-1 value-generation-2'), `${R} ${R}`)
    s.set('cred', ['value-generation-3'])
    assert.equal(s.scrub('value-generation-1 value-generation-2 value-generation-3'), `value-generation-1 ${R} ${R}`)
  })

  test('setting the same values again does not age the previous generation out', () => {
    const s = new Scrubber()
    s.set('cred', ['value-generation-1'])
    s.set('cred', ['value-generation-2'])
    s.set('cred', ['value-generation-2'])
    assert.equal(s.scrub('value-generation-1'), R)
  })

  test('keys are independent; delete forgets one key, clear forgets all', () => {
    const s = new Scrubber()
    s.set('a', ['alpha-secret'])
    s.set('b', ['bravo-secret'])
    assert.equal(s.size, 2)
    s.delete('a')
    assert.equal(s.scrub('alpha-secret bravo-secret'), `alpha-secret ${R}`)
    s.clear()
    assert.equal(s.scrub('alpha-secret bravo-secret'), 'alpha-secret bravo-secret')
    assert.equal(s.size, 0)
  })

  test('values shorter than the minimum are skipped and counted, not registered', () => {
    const s = new Scrubber()
    assert.deepEqual(s.set('cred', ['abc', '', 'long-enough']), { skippedShort: 2 })
    assert.equal(s.scrub('abc long-enough'), `abc ${R}`)
    const strict = new Scrubber({ minLength: 12 })
    assert.deepEqual(strict.set('cred', ['long-enough']), { skippedShort: 1 })
    assert.equal(strict.size, 0)
  })

  test('regex metacharacters in a secret are matched literally', () => {
    const secret = String.raw`a.b*c+d?e^f$g{1}(h)|i[j]\k/l-m`
    const s = new Scrubber()
    s.set('cred', [secret])
    assert.equal(s.scrub(`x ${secret} y`), `x ${R} y`)
    assert.equal(s.scrub('x aXb*c+d y'), 'x aXb*c+d y')
    assertNoCanary(s.scrub(JSON.stringify({ v: secret })), [secret])
  })

  test('the longest form wins when one form extends another', () => {
    const s = new Scrubber()
    s.set('cred', ['abcd'])
    // base64("abcd") = "YWJjZA==": the padding must not be left behind.
    assert.equal(s.scrub('YWJjZA=='), R)
  })

  test('a scrubbed JSON line stays valid JSON, even when the secret meets an escape sequence', () => {
    const s = new Scrubber()
    s.set('cred', ['nsecret-value', 'trailing\\', 'q"uote-secret'])
    for (const msg of ['line\nsecret-value', 'x trailing\\ y', 'x trailing\\', 'say q"uote-secret', 'a\\nsecret-value']) {
      const line = JSON.stringify({ msg })
      const out = s.scrub(line)
      assert.doesNotThrow(() => JSON.parse(out), `scrubbed line parses: ${out}`)
    }
    const parsed = JSON.parse(s.scrub(JSON.stringify({ msg: 'line\nsecret-value' }))) as { msg: string }
    assert.ok(!parsed.msg.includes('secret-value'))
  })

  test('a thousand values are all scrubbed', () => {
    const s = new Scrubber()
    const values = Array.from({ length: 1000 }, (_, i) => `bulk-secret-${i.toString(36)}-${(i * 7919).toString(16)}`)
    for (let i = 0; i < 100; i++) s.set(`k${i}`, values.slice(i * 10, i * 10 + 10))
    assert.equal(s.size, 1000)
    const text = values.join(' | ')
    assert.equal(s.scrub(text), values.map(() => R).join(' | '))
  })

  test('ordinary log text is not touched', () => {
    const s = new Scrubber()
    s.set('cred', [CANARY, 'svc-user:canary-pw-77aa31', 'Zm9vYmFy-secret'])
    const line = JSON.stringify({ level: 30, time: '2025-01-01T00:00:00.000Z', name: 'latchkey', event: 'request', credential: 'github', host: 'api.github.com', path: '/repos/o/r', status: 200, durationMs: 12, msg: 'request' })
    assert.equal(s.scrub(line), line)
  })

  test('the held values never show in inspect or JSON', () => {
    const s = new Scrubber()
    s.set('cred', [CANARY])
    assertNoCanary([inspect(s), JSON.stringify(s), inspect(s, { showHidden: true })], [CANARY])
    assert.equal(JSON.stringify(s), '{"size":1}')
  })

  test('for any secret, a JSON line carrying it in every form scrubs to valid JSON with no form left', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', minLength: 2, maxLength: 40 }), fc.string({ maxLength: 6 }), (tail, around) => {
        // A distinctive head, as real secrets are random: a value made of JSON punctuation
        // (`{"ms`) would also match the line's own structure.
        const secret = 'K9' + tail
        const s = new Scrubber()
        s.set('k', [secret])
        const bytes = Buffer.from(secret)
        const line = JSON.stringify({
          msg: `${around}${secret}${around}`,
          b64: bytes.toString('base64'),
          url: `https://h/?q=${encodeURIComponent(secret)}&f=${new URLSearchParams({ f: secret }).toString().slice(2)}`,
          blob: Buffer.concat([Buffer.from(around), bytes, Buffer.from('tail')]).toString('base64'),
          inner: JSON.stringify({ v: secret }),
        })
        const out = s.scrub(line)
        JSON.parse(out)
        assertNoCanary(out, [secret])
      }),
      { numRuns: 300 },
    )
  })
})
