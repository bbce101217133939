import assert from 'node:assert/strict'
import { test } from 'node:test'

test('the package entry exports the library API under its own name', async () => {
  const lib = await import('latchkey')
  assert.equal(typeof lib.createLatchkeyInterceptor, 'function')
  assert.equal(typeof lib.startDaemon, 'function')
  assert.equal(typeof lib.createInterceptor, 'function')
  assert.equal(typeof lib.compileConfig, 'function')
  assert.ok(lib.ERROR_CODES.secret_unavailable)
})
