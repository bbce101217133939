import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { serializeError, MAX_CAUSE_DEPTH } from '../../src/redact/error-serializer.ts'
import { compileLogObjectRedactor } from '../../src/redact/log-object.ts'
import { sensitiveHeaderSet } from '../../src/redact/sensitive-headers.ts'
import { createLogger } from '../../src/redact/logger.ts'
import { Scrubber } from '../../src/redact/scrubber.ts'
import { captureLogs } from '../helpers/log-capture.ts'

const R = '[REDACTED]'
const redact = compileLogObjectRedactor(sensitiveHeaderSet(['X-Custom-Auth']))

describe('log object redaction (structure layer)', () => {
  test('an object that needs nothing is returned as is, without copying', () => {
    const obj = { event: 'request', credential: 'c', nested: { host: 'h', list: [1, 'two'] }, headers: { accept: '*/*' } }
    assert.equal(redact(obj), obj)
  })

  test('sensitive header values are censored by name in any casing, at several depths', () => {
    const obj = {
      headers: { Authorization: 'a', 'X-CUSTOM-AUTH': 'b', accept: 'c' },
      a: { b: { headers: { cookie: 'd' } } },
      rawHeaders: ['X-Api-Key', 'e', 'Accept', 'f'],
      pairs: { headers: [['set-cookie', 'g'], ['vary', 'h']] },
    }
    assert.deepEqual(redact(obj), {
      headers: { Authorization: R, 'X-CUSTOM-AUTH': R, accept: 'c' },
      a: { b: { headers: { cookie: R } } },
      rawHeaders: ['X-Api-Key', R, 'Accept', 'f'],
      pairs: { headers: [['set-cookie', R], ['vary', 'h']] },
    })
    // The caller's objects are untouched.
    assert.equal(obj.headers.Authorization, 'a')
    assert.equal(obj.rawHeaders[1], 'e')
  })

  test('errors anywhere become their allow-listed form, and buffers their length', () => {
    const err = Object.assign(new Error('boom'), { config: { headers: { Authorization: 'x' } }, code: 'E1' })
    const out = redact({ list: [err], deep: { e: err }, buf: Buffer.from('abc') }) as unknown as { list: Array<Record<string, unknown>>; deep: { e: Record<string, unknown> }; buf: string }
    assert.deepEqual(Object.keys(out.list[0] ?? {}).sort(), ['code', 'message', 'stack', 'type'])
    assert.equal(out.deep.e.message, 'boom')
    assert.equal(out.buf, '[binary 3 bytes]')
  })

  test('a custom header name reaches child logger bindings through the structure layer alone', () => {
    const logs = captureLogs()
    const logger = createLogger({ level: 'info', scrubber: new Scrubber(), destination: logs.stream, sensitiveHeaders: ['x-custom-auth'] })
    logger.child({ headers: { 'X-Custom-Auth': 'bound-value-1' } }).info({ req: { headers: { 'x-custom-auth': 'logged-value-2' } } }, 'm')
    assert.ok(!logs.text().includes('bound-value-1'))
    assert.ok(!logs.text().includes('logged-value-2'))
  })

  test('a cyclic or very deep object does not hang the walk', () => {
    type Node = { next?: Node; headers?: Record<string, string> }
    const cyclic: Node = {}
    cyclic.next = cyclic
    assert.equal(redact(cyclic), cyclic)
    let deep: Node = { headers: { authorization: 'too-deep' } }
    for (let i = 0; i < 50; i++) deep = { next: deep }
    assert.equal(redact(deep), deep)
  })
})

describe('serializeError', () => {
  test('the cause chain stops at the depth limit, so a cycle terminates', () => {
    const a = new Error('a') as Error & { cause?: unknown }
    a.cause = a
    let depth = 0
    for (let e = serializeError(a); typeof e === 'object' && e.cause !== undefined; e = e.cause) depth++
    assert.equal(depth, MAX_CAUSE_DEPTH)
  })

  test('non-errors are handled: strings pass, plain objects are allow-listed', () => {
    assert.equal(serializeError('plain'), 'plain')
    assert.deepEqual(serializeError({ message: 'm', code: 7, config: { x: 1 }, $metadata: { httpStatusCode: 429 } }), { type: 'Error', message: 'm', code: 7, status: 429 })
  })

  test('a hostile getter yields a placeholder instead of throwing', () => {
    const evil = new Error('x')
    Object.defineProperty(evil, 'code', { get() { throw new Error('nope') }, enumerable: true })
    assert.deepEqual(serializeError(evil), { type: 'Error', message: '[error could not be serialized]' })
  })
})
