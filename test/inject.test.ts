import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { LatchkeyError } from '../src/errors.ts'
import { compileInjector, type InjectSpec } from '../src/inject/render.ts'

const CANARY = 'canary-7f3a9c1e-secret'

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64')
}

/** Asserts `fn` throws a LatchkeyError with `code` whose message names the credential and leaks none of `secrets`. */
function assertRefused(fn: () => unknown, code: string, credential: string, secrets: string[], message?: RegExp): LatchkeyError {
  let caught: unknown
  try {
    fn()
  } catch (err) {
    caught = err
  }
  assert.ok(caught instanceof LatchkeyError, `expected a LatchkeyError, got ${String(caught)}`)
  assert.equal(caught.code, code)
  assert.match(caught.message, new RegExp(`credential ${credential}\\b`))
  if (message) assert.match(caught.message, message)
  const visible = [caught.message, caught.stack ?? '', JSON.stringify(caught), String(caught.cause ?? '')].join('\n')
  for (const s of secrets) {
    for (const form of [s, b64(s), encodeURIComponent(s)]) {
      if (form.length >= 4) assert.ok(!visible.includes(form), `error text leaks ${JSON.stringify(form)}`)
    }
  }
  return caught
}

const bearer: InjectSpec = { type: 'bearer', overwrite: true }
const basic: InjectSpec = { type: 'basic', overwrite: true }
const header = (h: string, value = '{value}', overwrite = true): InjectSpec => ({ type: 'header', header: h, value, overwrite })

describe('compileInjector: bearer', () => {
  it('renders Authorization: Bearer {value} from the whole secret', () => {
    const inj = compileInjector('mlflow', bearer, undefined)
    assert.equal(inj.headerName, 'authorization')
    assert.equal(inj.overwrite, true)
    assert.equal(inj.render(CANARY), `Bearer ${CANARY}`)
  })

  it('selects a string or number field of a JSON secret', () => {
    const inj = compileInjector('mlflow', bearer, 'token')
    assert.equal(inj.render(JSON.stringify({ token: CANARY, other: 'x' })), `Bearer ${CANARY}`)
    assert.equal(inj.render('{"token": 12345}'), 'Bearer 12345')
  })

  it('refuses a missing, non-scalar or inherited field, and a secret that is not a JSON object, without quoting it', () => {
    const inj = compileInjector('mlflow', bearer, 'token')
    assertRefused(() => inj.render(JSON.stringify({ other: CANARY })), 'invalid_secret', 'mlflow', [CANARY], /field "token" is missing/)
    assertRefused(() => inj.render(JSON.stringify({ token: { nested: CANARY } })), 'invalid_secret', 'mlflow', [CANARY])
    assertRefused(() => inj.render(JSON.stringify({ token: true })), 'invalid_secret', 'mlflow', [CANARY])
    assertRefused(() => inj.render(JSON.stringify({ token: '' })), 'invalid_secret', 'mlflow', [CANARY], /empty/)
    assertRefused(() => inj.render(`{"token": "${CANARY}"`), 'invalid_secret', 'mlflow', [CANARY], /not a JSON object/)
    assertRefused(() => inj.render(CANARY), 'invalid_secret', 'mlflow', [CANARY], /not a JSON object/)
    assertRefused(() => inj.render(JSON.stringify([CANARY])), 'invalid_secret', 'mlflow', [CANARY])
    const proto = compileInjector('mlflow', bearer, 'constructor')
    assertRefused(() => proto.render('{}'), 'invalid_secret', 'mlflow', [])
  })

  it('refuses CR, LF and NUL in the rendered value, naming the credential and never the value', () => {
    const inj = compileInjector('mlflow', bearer, undefined)
    for (const bad of [`${CANARY}\r\nX-Evil: 1`, `${CANARY}\n`, `${CANARY}\0tail`, `\r${CANARY}`]) {
      assertRefused(() => inj.render(bad), 'header_value_invalid', 'mlflow', [CANARY, bad], /CR, LF or NUL/)
    }
    const viaField = compileInjector('mlflow', bearer, 'token')
    assertRefused(() => viaField.render(JSON.stringify({ token: `${CANARY}\r\nX: y` })), 'header_value_invalid', 'mlflow', [CANARY])
  })

  it('refuses other control characters and characters outside Latin-1', () => {
    const inj = compileInjector('mlflow', bearer, undefined)
    assertRefused(() => inj.render(`${CANARY}\x01`), 'header_value_invalid', 'mlflow', [CANARY], /control character/)
    assertRefused(() => inj.render(`${CANARY}\x7f`), 'header_value_invalid', 'mlflow', [CANARY], /control character/)
    assertRefused(() => inj.render(`${CANARY}€`), 'header_value_invalid', 'mlflow', [CANARY], /Latin-1/)
    assert.equal(inj.render(`${CANARY}\tx`), `Bearer ${CANARY}\tx`)
  })

  it('refuses an empty secret', () => {
    assertRefused(() => compileInjector('mlflow', bearer, undefined).render(''), 'invalid_secret', 'mlflow', [], /empty/)
  })
})

describe('compileInjector: basic', () => {
  const pass = `${CANARY}-pw:with:colons`

  it('encodes username and password from a JSON secret', () => {
    const inj = compileInjector('warehouse', basic, undefined)
    assert.equal(inj.headerName, 'authorization')
    assert.equal(inj.render(JSON.stringify({ username: 'etl', password: pass, host: 'db' })), `Basic ${b64(`etl:${pass}`)}`)
    assert.equal(inj.render('{"username": "etl", "password": 42}'), `Basic ${b64('etl:42')}`)
  })

  it('encodes a plain user:pass string, splitting at the first colon', () => {
    const inj = compileInjector('warehouse', basic, undefined)
    assert.equal(inj.render(`etl:${pass}`), `Basic ${b64(`etl:${pass}`)}`)
    assert.equal(inj.render(':token-only'), `Basic ${b64(':token-only')}`)
    assert.equal(inj.render('ünïcode:pässword'), `Basic ${b64('ünïcode:pässword')}`)
  })

  it('takes user:pass from the selected field when one is set', () => {
    const inj = compileInjector('warehouse', basic, 'creds')
    assert.equal(inj.render(JSON.stringify({ creds: `etl:${pass}` })), `Basic ${b64(`etl:${pass}`)}`)
    assertRefused(() => inj.render(JSON.stringify({ creds: CANARY })), 'invalid_secret', 'warehouse', [CANARY], /field "creds" needs that field to hold user:pass/)
    assertRefused(() => inj.render(JSON.stringify({ username: 'etl', password: CANARY })), 'invalid_secret', 'warehouse', [CANARY], /field "creds" is missing/)
  })

  it('refuses JSON without username/password, a string without a colon, and a username with a colon', () => {
    const inj = compileInjector('warehouse', basic, undefined)
    assertRefused(() => inj.render(JSON.stringify({ user: 'etl', password: CANARY })), 'invalid_secret', 'warehouse', [CANARY], /"username" and "password"/)
    assertRefused(() => inj.render(CANARY), 'invalid_secret', 'warehouse', [CANARY], /neither/)
    assertRefused(() => inj.render(JSON.stringify({ username: 'a:b', password: CANARY })), 'invalid_secret', 'warehouse', [CANARY, 'a:b'], /username contains ":"/)
    assertRefused(() => inj.render(':'), 'invalid_secret', 'warehouse', [], /both empty/)
  })

  it('refuses CR, LF or NUL in the username or password', () => {
    const inj = compileInjector('warehouse', basic, undefined)
    assertRefused(() => inj.render(`etl:${CANARY}\r\n`), 'header_value_invalid', 'warehouse', [CANARY], /CR, LF or NUL/)
    assertRefused(() => inj.render(JSON.stringify({ username: 'etl\n', password: CANARY })), 'header_value_invalid', 'warehouse', [CANARY])
    assertRefused(() => inj.render(JSON.stringify({ username: 'etl', password: `${CANARY}\0` })), 'header_value_invalid', 'warehouse', [CANARY])
  })
})

describe('compileInjector: header templates', () => {
  it('uses {value} by default and keeps the configured header name in lowercase', () => {
    const inj = compileInjector('search', header('X-Api-Key'), undefined)
    assert.equal(inj.headerName, 'x-api-key')
    assert.equal(inj.render(CANARY), CANARY)
  })

  it('renders literal text around {value}, {json.KEY} and {{ }} escapes', () => {
    const secret = JSON.stringify({ token: CANARY, id: 7, 'dotted.key': 'dv' })
    assert.equal(compileInjector('s', header('X-Api-Key', 'Key {value}'), 'token').render(secret), `Key ${CANARY}`)
    assert.equal(compileInjector('s', header('X-Auth', 'id={json.id};tok={json.token}'), undefined).render(secret), `id=7;tok=${CANARY}`)
    assert.equal(compileInjector('s', header('X-Auth', '{{literal}} {json.dotted.key}'), undefined).render(secret), '{literal} dv')
    assert.equal(compileInjector('s', header('X-Auth', '{value}:{json.id}'), 'token').render(secret), `${CANARY}:7`)
  })

  it('refuses a missing JSON key or a non-JSON secret when the template needs one', () => {
    const inj = compileInjector('search', header('X-Auth', 'Token {json.token}'), undefined)
    assertRefused(() => inj.render(JSON.stringify({ other: CANARY })), 'invalid_secret', 'search', [CANARY], /JSON key "token"/)
    assertRefused(() => inj.render(CANARY), 'invalid_secret', 'search', [CANARY], /\{json\.token\} but the secret is not a JSON object/)
  })

  it('refuses CR/LF/NUL that reach the rendered value through a JSON key', () => {
    const inj = compileInjector('search', header('X-Auth', 'Token {json.token}'), undefined)
    assertRefused(() => inj.render(JSON.stringify({ token: `${CANARY}\r\nHost: evil` })), 'header_value_invalid', 'search', [CANARY], /X-Auth value contains CR, LF or NUL/)
  })

  it('passes the overwrite flag through for every type', () => {
    assert.equal(compileInjector('a', { type: 'bearer', overwrite: false }, undefined).overwrite, false)
    assert.equal(compileInjector('a', { type: 'basic', overwrite: false }, undefined).overwrite, false)
    assert.equal(compileInjector('a', header('X-K', '{value}', false), undefined).overwrite, false)
    assert.equal(compileInjector('a', header('X-K', '{value}', true), undefined).overwrite, true)
  })

  it('refuses invalid and message-framing header names at compile time', () => {
    for (const bad of ['X Api', 'X-Api:', 'Ä-Key', '', '(x)', 'x\r\ny']) {
      assert.throws(() => compileInjector('a', header(bad), undefined), /not a valid HTTP field name/, JSON.stringify(bad))
    }
    for (const reserved of ['Host', 'Content-Length', 'transfer-encoding', 'Connection', 'Proxy-Authorization', 'Upgrade', 'TE']) {
      assert.throws(() => compileInjector('a', header(reserved), undefined), /cannot carry a credential/, reserved)
    }
  })

  it('refuses malformed templates at compile time, saying why', () => {
    const bad: Array<[string, RegExp]> = [
      ['Key {value', /unclosed "\{"/],
      ['Key value}', /lone "\}"/],
      ['Key {secret}', /unknown placeholder \{secret\}/],
      ['Key {json.}', /\{json\.\} needs a key/],
      ['static', /no placeholder/],
      ['{{value}}', /no placeholder/],
      ['a\r\n{value}', /CR, LF, NUL/],
    ]
    for (const [template, why] of bad) assert.throws(() => compileInjector('a', header('X-K', template), undefined), why, template)
  })
})

describe('secretForms', () => {
  it('lists the field value and the rendered header for bearer', () => {
    const forms = compileInjector('m', bearer, 'token').secretForms(JSON.stringify({ token: CANARY }))
    assert.deepEqual(forms.sort(), [CANARY, `Bearer ${CANARY}`].sort())
  })

  it('lists username, password, user:pass, its base64 and the rendered header for basic', () => {
    const forms = compileInjector('w', basic, undefined).secretForms(JSON.stringify({ username: 'etl-user', password: CANARY }))
    for (const f of ['etl-user', CANARY, `etl-user:${CANARY}`, b64(`etl-user:${CANARY}`), `Basic ${b64(`etl-user:${CANARY}`)}`]) assert.ok(forms.includes(f), f)
  })

  it('lists every JSON value a template uses', () => {
    const forms = compileInjector('s', header('X-K', '{json.a}/{json.b}'), undefined).secretForms(JSON.stringify({ a: 'alpha-value', b: CANARY, c: 'unused-value' }))
    assert.ok(forms.includes('alpha-value') && forms.includes(CANARY) && forms.includes(`alpha-value/${CANARY}`))
    assert.ok(!forms.includes('unused-value'))
  })

  it('never throws, and still lists what it could derive from an unrenderable secret', () => {
    const forms = compileInjector('m', bearer, undefined).secretForms(`${CANARY}\r\n`)
    assert.ok(forms.includes(`${CANARY}\r\n`))
    assert.deepEqual(compileInjector('m', bearer, 'token').secretForms('not json'), [])
  })
})
