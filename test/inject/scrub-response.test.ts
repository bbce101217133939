import assert from 'node:assert/strict'
import { test } from 'node:test'
import { compileConfig } from '../../src/config/load.ts'
import { BodyScrubber, responseScrubForms, ScrubForms } from '../../src/inject/scrub-response.ts'
import { SecretValue } from '../../src/providers/secret-value.ts'
import { assertNoCanary } from '../helpers/log-capture.ts'

const CANARY = 'canary-scrub+9f3b/2c1d=x y'
const RENDERED = `Bearer ${CANARY}`

/** A body holding the value in every encoding an echo might use. */
function echoBody(): Buffer {
  const b64 = Buffer.from(CANARY).toString('base64')
  return Buffer.from(
    JSON.stringify({ authorization: RENDERED, raw: CANARY, b64, b64url: Buffer.from(CANARY).toString('base64url'), url: encodeURIComponent(CANARY), lowerUrl: encodeURIComponent(CANARY).toLowerCase(), form: new URLSearchParams({ k: CANARY }).toString(), embedded: Buffer.from(`xy${CANARY}zw`).toString('base64') }) +
      ` trailing ${CANARY}`,
  )
}

function scrubInChunks(body: Buffer, cuts: number[]): Buffer {
  const s = new BodyScrubber(new ScrubForms([RENDERED, CANARY]))
  const out: Buffer[] = []
  let at = 0
  for (const cut of [...cuts, body.length]) {
    s.push(body.subarray(at, cut), (piece) => out.push(piece))
    at = cut
  }
  s.end((piece) => out.push(piece))
  return Buffer.concat(out)
}

test('a body with the value in every encoding comes out without any of them, with its length unchanged', () => {
  const body = echoBody()
  const out = scrubInChunks(body, [])
  assert.equal(out.length, body.length)
  assertNoCanary(out.toString('latin1'), [CANARY])
  assert.match(out.toString(), /"authorization":"\*+"/)
})

test('a value split across two chunks is found at every offset', () => {
  const body = echoBody()
  const whole = scrubInChunks(body, [])
  for (let cut = 0; cut <= body.length; cut++) {
    const out = scrubInChunks(body, [cut])
    assert.ok(out.equals(whole), `split at ${cut}`)
  }
})

test('a value spread over one-byte chunks is still found', () => {
  const body = echoBody()
  const out = scrubInChunks(body, Array.from({ length: body.length - 1 }, (_, i) => i + 1))
  assert.ok(out.equals(scrubInChunks(body, [])))
  assertNoCanary(out.toString('latin1'), [CANARY])
})

test('a chunk without the value is passed on as the same bytes, and only the tail is held back', () => {
  const forms = new ScrubForms([CANARY])
  const s = new BodyScrubber(forms)
  const pieces: Buffer[] = []
  const first = Buffer.from('x'.repeat(1000))
  s.push(first, (p) => pieces.push(p))
  assert.equal(pieces.length, 1)
  assert.equal(pieces[0]?.length, 1000 - (forms.maxLength - 1))
  assert.equal(pieces[0]?.buffer, first.buffer, 'no copy for a chunk without a match')
  const second = Buffer.from('y'.repeat(1000))
  s.push(second, (p) => pieces.push(p))
  assert.equal(pieces[1]?.length, forms.maxLength - 1, 'the held tail goes first')
  assert.equal(pieces[2]?.buffer, second.buffer, 'the next chunk is not joined to the tail')
  s.end((p) => pieces.push(p))
  assert.equal(pieces[3]?.length, forms.maxLength - 1)
})

test('chunks of every size between 1 byte and twice the longest form scrub the same', () => {
  const body = Buffer.concat([echoBody(), echoBody()])
  const whole = scrubInChunks(body, [])
  for (let size = 1; size <= 2 * Buffer.byteLength(CANARY) * 4; size++) {
    const cuts = Array.from({ length: Math.ceil(body.length / size) - 1 }, (_, i) => (i + 1) * size)
    assert.ok(scrubInChunks(body, cuts).equals(whole), `chunks of ${size}`)
  }
})

test('a UTF-8 value is matched by its bytes, and values shorter than 4 characters are not scrubbed', () => {
  const value = 'clé-secrète-ü'
  const s = new BodyScrubber(new ScrubForms([value, 'abc']))
  const body = Buffer.from(`{"v":"${value}","w":"abc"}`)
  const pieces: Buffer[] = []
  s.push(body.subarray(0, 9), (p) => pieces.push(p))
  s.push(body.subarray(9), (p) => pieces.push(p))
  s.end((p) => pieces.push(p))
  const out = Buffer.concat(pieces)
  assert.equal(out.length, body.length)
  assert.ok(!out.includes(Buffer.from(value)))
  assert.match(out.toString(), /"w":"abc"/)
})

test('for basic, the password and the pair are scrubbed, the username alone is not', () => {
  const config = compileConfig(
    { providers: { dev: { type: 'env' } }, credentials: { b: { provider: 'dev', ref: 'B', hosts: ['basic.lk.test'], inject: { type: 'basic' } } } },
    { env: {}, baseDir: '.' },
  )
  const credential = config.credentials.b
  assert.ok(credential)
  const secret = new SecretValue('alice:pw-canary-7c1e9a')
  const forms = responseScrubForms(credential, { secret, headerValue: credential.injector.render(secret.reveal()), stale: false })
  const echoed = `user alice, password pw-canary-7c1e9a, pair alice:pw-canary-7c1e9a, header Basic ${Buffer.from('alice:pw-canary-7c1e9a').toString('base64')}`
  const out = forms.scrubText(echoed)
  assert.equal(out.length, echoed.length)
  assert.match(out, /^user alice, /)
  assertNoCanary(out, [{ username: 'alice', password: 'pw-canary-7c1e9a' }])
  assert.equal(responseScrubForms(credential, { secret, headerValue: credential.injector.render(secret.reveal()), stale: false }), forms, 'compiled once per value')
})
