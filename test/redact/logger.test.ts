import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { LatchkeyError, ProviderError } from '../../src/errors.ts'
import { SecretValue } from '../../src/providers/secret-value.ts'
import { createLogger } from '../../src/redact/logger.ts'
import { Scrubber } from '../../src/redact/scrubber.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'

const CANARY = 'canary-logger-8d1f6b3e2a'
const USER = { username: 'canary-svc', password: 'canary-pw-c0ffee42' }
const R = '[REDACTED]'

function setup(opts: { sensitiveHeaders?: readonly string[]; register?: boolean } = {}) {
  const logs = captureLogs()
  const scrubber = new Scrubber()
  if (opts.register !== false) {
    scrubber.set('api', [CANARY])
    scrubber.set('basic', [`${USER.username}:${USER.password}`, USER.password])
  }
  const logger = createLogger({ level: 'trace', scrubber, destination: logs.stream, ...(opts.sensitiveHeaders ? { sensitiveHeaders: opts.sensitiveHeaders } : {}) })
  return { logs, scrubber, logger }
}

/** An error shaped like the ones axios, node-vault and cloud SDKs throw. */
function sdkError(): Error {
  const err = new Error(`Request failed with status code 403 for key ${CANARY}`) as Error & Record<string, unknown>
  err.code = 'ERR_BAD_REQUEST'
  err.config = {
    url: 'https://vault.internal:8200/v1/secret/data/app',
    headers: { Authorization: `Bearer ${CANARY}`, 'X-Vault-Token': 'vault-only-here-91ab', Accept: 'application/json' },
    data: JSON.stringify({ password: USER.password }),
    auth: { username: USER.username, password: USER.password },
  }
  err.response = {
    status: 403,
    headers: { 'set-cookie': 'sid=only-in-response-7788' },
    data: { errors: ['permission denied'], echoed: { token: 'echoed-token-3344', key: CANARY } },
  }
  err.credentials = { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'not-registered-secret-5566' }
  return err
}

describe('createLogger', () => {
  test('writes ISO-timestamped JSON lines named latchkey', () => {
    const { logs, logger } = setup()
    logger.info({ event: 'request', credential: 'github', host: 'api.github.com', status: 200 }, 'request')
    const [rec] = logs.records()
    assert.ok(rec)
    assert.equal(rec.name, 'latchkey')
    assert.match(String(rec.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    assert.deepEqual({ event: rec.event, credential: rec.credential, host: rec.host, status: rec.status, msg: rec.msg }, { event: 'request', credential: 'github', host: 'api.github.com', status: 200, msg: 'request' })
  })

  test('no line at trace level carries a held secret, wherever it was logged, and useful fields remain', () => {
    const { logs, logger } = setup()
    const basic = 'Basic ' + Buffer.from(`${USER.username}:${USER.password}`).toString('base64')
    logger.trace(`message with ${CANARY} inside`)
    logger.debug('printf style %s and %o', CANARY, { nested: CANARY })
    logger.info({ credential: 'api', host: 'api.example.com', detail: { deep: { deeper: { value: CANARY, list: [CANARY, encodeURIComponent(CANARY)] } } } }, 'nested')
    logger.info({ credential: 'api', headers: { authorization: basic, 'x-trace': CANARY } }, 'header object')
    logger.info({ req: { method: 'GET', headers: { Authorization: basic } }, res: { statusCode: 401, headers: { 'www-authenticate': `Bearer realm="${CANARY}"` } } }, 'req/res')
    logger.warn({ credential: 'api', url: `https://${USER.username}:${USER.password}@db.internal/x?token=${CANARY}` }, 'url')
    logger.info({ secret: new SecretValue(CANARY), b64: Buffer.from(CANARY).toString('base64') }, 'wrapped and encoded')
    const e1 = new LatchkeyError('upstream_error', `upstream said ${CANARY}`)
    logger.error(e1)
    logger.error({ err: e1, credential: 'api', host: 'api.example.com', status: 502 }, 'with err')
    const chain = new Error('outer', { cause: new Error('middle', { cause: new Error(`inner ${CANARY}`) }) })
    logger.error({ err: chain }, 'cause chain')
    logger.error({ error: sdkError(), credential: 'vault-db', host: 'vault.internal' }, 'provider call failed')
    logger.error({ problem: { inner: sdkError() } }, 'error nested under another key')
    logger.child({ credential: 'api', token: CANARY }).info({ buf: Buffer.from(CANARY) }, `child ${CANARY}`)
    logger.fatal({ aggregate: new AggregateError([new Error(CANARY), new Error('b')], 'many') }, 'aggregate')

    const lines = logs.lines()
    assert.equal(lines.length, 14)
    assertNoCanary(lines, [CANARY, USER, USER.password])
    const records = logs.records()
    assert.ok(records.every((r) => r.name === 'latchkey'))
    const text = logs.text()
    for (const kept of ['"credential":"api"', '"host":"api.example.com"', '"status":502', '"statusCode":401', 'upstream_error', '"msg":"provider call failed"', 'middle', 'inner [REDACTED]', '"credential":"vault-db"']) {
      assert.ok(text.includes(kept), `kept: ${kept}`)
    }
  })

  test('the stack and message of an error are scrubbed, and the cause chain keeps its shape', () => {
    const { logs, logger } = setup()
    const inner = new ProviderError('access_denied', `denied for ${CANARY}`, { providerCode: 'AccessDeniedException' })
    const err = new LatchkeyError('secret_unavailable', 'could not fetch', { cause: inner })
    logger.error({ err }, 'fetch failed')
    const rec = logs.records()[0] as { err: { type: string; message: string; stack: string; code: string; status: number; cause: { type: string; message: string; stack: string; providerCode: string; code: string } } }
    assert.equal(rec.err.type, 'LatchkeyError')
    assert.equal(rec.err.code, 'secret_unavailable')
    assert.equal(rec.err.status, 503)
    assert.match(rec.err.stack, /could not fetch/)
    assert.equal(rec.err.cause.type, 'ProviderError')
    assert.equal(rec.err.cause.providerCode, 'AccessDeniedException')
    assert.equal(rec.err.cause.code, 'access_denied')
    assert.equal(rec.err.cause.message, `denied for ${R}`)
    assert.match(rec.err.cause.stack, /denied for \[REDACTED\]/)
  })

  test('an SDK error keeps type, code, message, status and loses config, headers, response body and credentials', () => {
    const { logs, logger } = setup({ register: false })
    logger.error({ err: sdkError() }, 'provider call failed')
    const rec = logs.records()[0] as { err: Record<string, unknown> }
    assert.deepEqual(Object.keys(rec.err).sort(), ['code', 'message', 'stack', 'status', 'type'])
    assert.equal(rec.err.status, 403)
    assert.equal(rec.err.code, 'ERR_BAD_REQUEST')
    for (const gone of ['vault-only-here-91ab', 'only-in-response-7788', 'echoed-token-3344', 'not-registered-secret-5566', 'AKIAIOSFODNN7EXAMPLE', 'permission denied']) {
      assert.ok(!logs.text().includes(gone), `dropped: ${gone}`)
    }
  })

  test('sensitive header values are censored in any header collection, any casing, even when the value is not held', () => {
    const { logs, logger } = setup({ register: false, sensitiveHeaders: ['X-Custom-Auth'] })
    const h = { authorization: 'plainvalue1', 'X-API-Key': 'plainvalue2', Cookie: 'plainvalue3', 'x-custom-auth': 'plainvalue4', 'X-Custom-Auth': 'plainvalue5', accept: 'text/html' }
    logger.info({ headers: h, req: { headers: h }, res: { headers: { 'set-cookie': ['plainvalue6'] } }, request: { headers: h }, upstream: { response: { headers: { 'X-Vault-Token': 'plainvalue7' } } } }, 'headers')
    logger.info({ rawHeaders: ['Host', 'h', 'Proxy-Authorization', 'plainvalue8'], pairs: { headers: [['x-amz-security-token', 'plainvalue9'], ['accept', '*/*']] } }, 'raw')
    logger.child({ headers: { authorization: 'plainvalue10' } }).info('bound')
    const text = logs.text()
    for (let i = 1; i <= 10; i++) assert.ok(!text.includes(`plainvalue${i}"`), `plainvalue${i} censored`)
    assert.ok(text.includes('"accept":"text/html"'))
    assert.ok(text.includes('["accept","*/*"]'))
    assert.ok(text.includes('"Host","h"'))
    // The caller's object is not modified by redaction.
    assert.equal(h.authorization, 'plainvalue1')
  })

  test('values registered after the logger was created are scrubbed, and a rotated-out value ages out', () => {
    const { logs, logger, scrubber } = setup({ register: false })
    scrubber.set('late', ['late-secret-value-1'])
    logger.info('late-secret-value-1')
    scrubber.set('late', ['late-secret-value-2'])
    scrubber.set('late', ['late-secret-value-3'])
    logger.info('late-secret-value-1 late-secret-value-2 late-secret-value-3')
    assert.deepEqual(logs.records().map((r) => r.msg), [R, `late-secret-value-1 ${R} ${R}`])
  })

  test('pattern redaction applies to secrets nobody registered', () => {
    const { logs, logger } = setup({ register: false })
    logger.info({ body: JSON.stringify({ access_token: 'unregistered-1', expires_in: 60 }), auth: 'Bearer unregistered-2x' }, 'oauth')
    const text = logs.text()
    assert.ok(!text.includes('unregistered-1') && !text.includes('unregistered-2x'))
    assert.ok(text.includes('expires_in'))
  })

  test('a line whose redaction throws is replaced, never written unscrubbed', () => {
    class Broken extends Scrubber {
      override scrub(): string {
        throw new Error('boom')
      }
    }
    const logs = captureLogs()
    const logger = createLogger({ level: 'info', scrubber: new Broken(), destination: logs.stream })
    logger.info(`plain ${CANARY}`)
    assertNoCanary(logs.lines(), [CANARY])
    assert.equal(logs.records()[0]?.event, 'log_redaction_failed')
  })

  test('the caller\'s objects and errors are not modified', () => {
    const { logger } = setup()
    const err = sdkError()
    const obj = { detail: { err }, list: [err] }
    logger.error(obj, 'x')
    assert.equal(obj.detail.err, err)
    assert.equal(obj.list[0], err)
    assert.ok('config' in err)
  })

  test('silent writes nothing', () => {
    const logs = captureLogs()
    const logger = createLogger({ level: 'silent', scrubber: new Scrubber(), destination: logs.stream })
    logger.error('nothing')
    assert.equal(logs.lines().length, 0)
  })
})
