import assert from 'node:assert/strict'
import { test } from 'node:test'
import { validateConfig } from '../../src/config/load.ts'
import { expiryOf } from '../../src/mint/minters.ts'
import { awsKeyForms, sigv4SecretForms, SigV4Signer } from '../../src/mint/sigv4.ts'
import { createLogger } from '../../src/redact/logger.ts'
import { Scrubber } from '../../src/redact/scrubber.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'

const opts = { env: {}, baseDir: '.' }
const providers = { dev: { type: 'env' } }
const oauth2 = (inject: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  providers,
  credentials: { api: { provider: 'dev', ref: 'CLIENT_SECRET', hosts: ['api.example.com'], inject: { type: 'oauth2', tokenUrl: 'https://login.example.com/token', clientId: 'c1', ...inject }, ...extra } },
})

function problems(raw: unknown): string[] {
  const r = validateConfig(raw, opts)
  return r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`)
}

test('an oauth2 credential compiles to a bearer injector, its own cache key, and a stored-secret source with the credential TTL', () => {
  const r = validateConfig(oauth2({ scope: 'read', auth: 'client_secret_post' }, { ttl: '2m' }), opts)
  assert.ok(r.ok)
  const c = r.config.credentials.api
  assert.equal(c?.injector.headerName, 'authorization')
  assert.equal(c?.mint?.kind, 'oauth2')
  assert.deepEqual(c?.mint?.options.type === 'oauth2' && c.mint.options.scope, ['read'])
  assert.equal(c?.mint?.tokenUrl?.href, 'https://login.example.com/token')
  assert.equal(c?.mint?.source?.ttlMs, 120_000)
  assert.notEqual(c?.cacheKey, c?.mint?.source?.cacheKey)
})

test('token endpoints must be https, or http on loopback with insecure: true', () => {
  assert.match(problems(oauth2({ tokenUrl: 'http://127.0.0.1:9000/token' })).join('\n'), /credentials\.api\.inject\.tokenUrl: .*https/)
  assert.match(problems(oauth2({ tokenUrl: 'http://login.example.com/token', insecure: true })).join('\n'), /loopback/)
  assert.deepEqual(problems(oauth2({ tokenUrl: 'http://127.0.0.1:9000/token', insecure: true })), [])
  assert.match(problems(oauth2({ tokenUrl: 'https://u:p@login.example.com/token' })).join('\n'), /userinfo/)
})

test('provider and ref: required for stored-secret credentials and oauth2, optional together for cloud identity tokens', () => {
  assert.match(problems({ providers, credentials: { a: { hosts: ['a.example.com'], inject: { type: 'bearer' } } } }).join('\n'), /credentials\.a\.provider: provider is required/)
  assert.match(problems({ providers, credentials: { a: { hosts: ['a.example.com'], inject: { type: 'oauth2', tokenUrl: 'https://l.example.com/t', clientId: 'c' } } } }).join('\n'), /oauth2 needs provider and ref/)
  assert.deepEqual(problems({ credentials: { g: { hosts: ['storage.googleapis.com'], inject: { type: 'gcp-access-token' } } } }), [])
  assert.match(problems({ providers, credentials: { g: { provider: 'dev', hosts: ['x.example.com'], inject: { type: 'gcp-access-token' } } } }).join('\n'), /set both or neither/)
  assert.match(problems({ providers, credentials: { z: { provider: 'dev', ref: 'S', hosts: ['x.example.com'], inject: { type: 'azure-access-token', scopes: ['api://x/.default'] } } } }).join('\n'), /needs tenantId and clientId/)
  assert.match(problems(oauth2({ auth: 'client_secret_jwt' })).join('\n'), /credentials\.api\.inject/)
})

test('a minted token is cached for expires_in minus the skew, at most half its lifetime, and never served past expires_in', () => {
  assert.deepEqual(expiryOf(3_600_000, 60_000), { ttlMs: 3_540_000, usableMs: 3_600_000 })
  assert.deepEqual(expiryOf(2_000, 60_000), { ttlMs: 1_000, usableMs: 2_000 })
  assert.equal(expiryOf(undefined, 60_000), undefined)
  assert.equal(expiryOf(0, 60_000), undefined)
})

test('AWS keys fed to the scrubber never reach a trace-level log line in any encoding, whatever the signer logs about a request', async () => {
  const keys = { accessKeyId: 'AKIAMINTCANARY000001', secretAccessKey: 'canary-aws-secret-access-key-2b8e91', sessionToken: 'canary-aws-session-token-c04f77aa' }
  const scrubber = new Scrubber()
  scrubber.set('aws', sigv4SecretForms(JSON.stringify(keys)))
  assert.deepEqual(sigv4SecretForms(JSON.stringify(keys)), awsKeyForms(keys))
  assert.deepEqual(sigv4SecretForms('not json'), [])
  const logs = captureLogs()
  const logger = createLogger({ level: 'trace', scrubber, destination: logs.stream })
  const signer = new SigV4Signer({ region: 'eu-west-1', service: 's3' })
  const headers = await signer.sign({ method: 'GET', url: new URL('https://s3.eu-west-1.amazonaws.com/b/k'), headers: {}, plan: { mode: 'empty' }, keys })
  logger.trace({ headers, note: `keys ${keys.secretAccessKey} ${Buffer.from(keys.sessionToken).toString('base64')} ${encodeURIComponent(keys.secretAccessKey)}` }, `signed with ${JSON.stringify(keys)}`)
  logger.error({ err: new Error(`failed with ${keys.sessionToken}`) }, 'signing failed')
  assert.equal(logs.lines().length, 2)
  assertNoCanary(logs.lines(), [keys.secretAccessKey, keys.sessionToken])
})

test('aws-sigv4: stored keys (provider and ref) or the sidecar identity (neither); field, half a source, and unknown keys are refused', () => {
  const sigv4 = (extra: Record<string, unknown>, inject: Record<string, unknown> = {}) => ({ providers, credentials: { s3: { hosts: ['my-bucket.s3.eu-west-1.amazonaws.com', 'minio.internal:9000'], inject: { type: 'aws-sigv4', ...inject }, ...extra } } })
  const stored = validateConfig(sigv4({ provider: 'dev', ref: 'AWS_KEYS' }, { endpoints: { 'MinIO.internal:9000': { region: 'us-east-1', service: 's3' } } }), opts)
  assert.ok(stored.ok)
  const c = stored.config.credentials.s3
  assert.equal(c?.mint, undefined)
  assert.ok(c?.sigv4)
  assert.equal(c?.cacheKey, ['dev', 'AWS_KEYS', '', ''].join('\u0000'))
  assert.deepEqual(c?.sigv4?.plan(new URL('http://minio.internal:9000/b/k'), {}), { mode: 'empty' })
  const own = validateConfig(sigv4({}), opts)
  assert.ok(own.ok)
  assert.equal(own.config.credentials.s3?.mint?.kind, 'aws-sigv4')
  assert.equal(own.config.credentials.s3?.mint?.source, undefined)
  assert.match(problems(sigv4({ provider: 'dev', ref: 'K', field: 'aws' })).join('\n'), /credentials\.s3\.field: aws-sigv4 reads the whole secret/)
  assert.match(problems(sigv4({ provider: 'dev' })).join('\n'), /set both or neither/)
  assert.match(problems(sigv4({}, { maxBodyBytes: 0 })).join('\n'), /credentials\.s3\.inject/)
  assert.match(problems(sigv4({}, { scope: 'x' })).join('\n'), /credentials\.s3\.inject/)
  assert.match(problems(sigv4({}, { region: 'EU West' })).join('\n'), /region/)
})
