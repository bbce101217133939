import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ProxyAuth } from '../../src/policy/proxy-auth.ts'

const TOKEN = 'proxy-client-token-0123456789'
const auth = new ProxyAuth(TOKEN)
const basic = (user: string, pass: string) => 'Basic ' + Buffer.from(`${user}:${pass}`).toString('base64')

test('Bearer and Basic (any user, the token as password) are accepted, schemes in any case', () => {
  assert.ok(auth.accepts(`Bearer ${TOKEN}`))
  assert.ok(auth.accepts(`bearer ${TOKEN}`))
  assert.ok(auth.accepts(`BEARER   ${TOKEN} `))
  assert.ok(auth.accepts(basic('latchkey', TOKEN)))
  assert.ok(auth.accepts(basic('', TOKEN)))
  assert.ok(auth.accepts(basic('x', TOKEN).replace('Basic', 'bAsIc')))
})

test('a wrong, truncated, extended or malformed token is refused', () => {
  for (const h of [
    undefined, '', 'Bearer', `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Token ${TOKEN}`, TOKEN,
    basic(TOKEN, 'x'), 'Basic ' + Buffer.from(TOKEN).toString('base64'), `Bearer ${TOKEN} extra`,
  ]) assert.equal(auth.accepts(h), false, String(h))
  assert.equal(auth.accepts([`Bearer ${TOKEN}`, `Bearer ${TOKEN}`]), false)
})
