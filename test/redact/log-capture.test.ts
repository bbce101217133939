import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'

const CANARY = 'canary-helper-5b7c9d1e3f'
/** A canary whose encodings all differ from the raw text. */
const ODD = 'canary "odd" +/=&é 5b7c'
const USER = { username: 'canary-u', password: 'canary-p-6a6a6a' }

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64')
}

/** Runs `assertNoCanary` expecting it to fail; returns the message. */
function failureOf(outputs: string | string[], canaries: Parameters<typeof assertNoCanary>[1]): string {
  try {
    assertNoCanary(outputs, canaries)
  } catch (err) {
    assert.ok(err instanceof assert.AssertionError)
    return err.message
  }
  assert.fail('assertNoCanary did not fail')
}

describe('assertNoCanary', () => {
  test('passes on clean output', () => {
    assertNoCanary(['{"msg":"nothing to see"}', 'canary-helper'], [CANARY, ODD, USER])
    assertNoCanary('', [CANARY])
  })

  const forms: Array<[string, (v: string) => string]> = [
    ['raw', (v) => v],
    ['base64', (v) => b64(v)],
    ['unpadded base64', (v) => b64(v).replace(/=+$/, '')],
    ['base64url', (v) => Buffer.from(v).toString('base64url')],
    ['encodeURIComponent', (v) => encodeURIComponent(v)],
    ['lower-case percent escapes', (v) => encodeURIComponent(v).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase())],
    ['form encoding', (v) => new URLSearchParams({ k: v }).toString().slice(2)],
    ['JSON escaping', (v) => JSON.stringify(v).slice(1, -1)],
    ['JSON escaping twice', (v) => JSON.stringify(JSON.stringify(v)).slice(1, -1)],
    ['base64 inside a longer blob (offset 1)', (v) => b64('x' + v + 'tail')],
    ['base64 inside a longer blob (offset 2)', (v) => b64('xy' + v + 'tail')],
    ['base64url inside a longer blob', (v) => Buffer.from('x' + v + 'tail').toString('base64url')],
  ]
  for (const [name, encode] of forms) {
    for (const canary of [CANARY, ODD]) {
      test(`fails on the ${name} form${canary === ODD ? ' of a canary with special characters' : ''}, without printing the canary`, () => {
        const encoded = encode(canary)
        const msg = failureOf(['clean line', `{"msg":"prefix ${encoded} suffix"}`], ['other-canary-0000', canary])
        assert.match(msg, /canary #1 \(.+\) in output #1 at offset \d+/)
        for (const leak of [canary, encoded, b64(canary), encodeURIComponent(canary)]) assert.ok(!msg.includes(leak), 'message leaks the canary')
      })
    }
  }

  test('fails on base64("username:password") and on the password of a user canary, naming the form', () => {
    const basic = b64(`${USER.username}:${USER.password}`)
    assert.match(failureOf(`Authorization: Basic ${basic}`, [USER]), /canary #0 \(username:password base64\) in output #0 at offset 21/)
    assert.match(failureOf(`pw=${encodeURIComponent(USER.password)}`, [USER]), /canary #0 \(password (raw|url-encoded)\)/)
  })

  test('a single string is one output; every occurrence is reported', () => {
    const msg = failureOf(`${CANARY} and ${CANARY}`, [CANARY])
    assert.match(msg, /in output #0 at offset 0/)
    assert.match(failureOf(['a', 'b', `x${CANARY}`], [CANARY]), /output #2 at offset 1/)
  })

  test('rejects an empty canary instead of matching everything', () => {
    assert.throws(() => assertNoCanary('x', ['']), /canary #0 is empty/)
  })
})

describe('captureLogs', () => {
  test('collects lines written in pieces, as strings or Buffers, splitting multi-byte characters', async () => {
    const logs = captureLogs()
    const text = '{"a":"é1"}\n{"b":2}\n{"c":"€"}'
    const bytes = Buffer.from(text)
    // Byte-at-a-time cuts through the 2- and 3-byte characters.
    for (let i = 0; i < bytes.length; i++) logs.stream.write(i % 2 === 0 ? bytes.subarray(i, i + 1) : Buffer.from(bytes.subarray(i, i + 1)))
    logs.stream.write('\n')
    assert.deepEqual(logs.lines(), ['{"a":"é1"}', '{"b":2}', '{"c":"€"}'])
    assert.deepEqual(logs.records(), [{ a: 'é1' }, { b: 2 }, { c: '€' }])
    assert.equal(logs.text(), text + '\n')
  })

  test('a trailing line without a newline is still returned', () => {
    const logs = captureLogs()
    logs.stream.write('{"a":1}\n{"b"')
    assert.deepEqual(logs.lines(), ['{"a":1}', '{"b"'])
  })

  test('records() names a non-JSON line by index without printing it', () => {
    const logs = captureLogs()
    logs.stream.write(`{"ok":true}\nnot json ${CANARY}\n`)
    assert.throws(() => logs.records(), (err: Error) => err.message.includes('#1') && !err.message.includes(CANARY))
  })

  test('clear() forgets what was captured', () => {
    const logs = captureLogs()
    logs.stream.write('{"a":1}\n')
    logs.clear()
    assert.deepEqual(logs.lines(), [])
  })
})
