import assert from 'node:assert/strict'
import { test } from 'node:test'
import { validateConfig } from '../../src/config/load.ts'

const base = {
  providers: { dev: { type: 'env' } },
  credentials: {
    api: { provider: 'dev', ref: 'API_TOKEN', hosts: ['api.example.com'], inject: { type: 'bearer' } },
  },
}

function issues(extra: Record<string, unknown>, cred: Record<string, unknown> = {}) {
  const r = validateConfig({ ...base, ...extra, credentials: { api: { ...base.credentials.api, ...cred } } }, { env: {}, baseDir: '.' })
  return r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`)
}

test('allow rules compile into the credential; no rules means host binding only', () => {
  const r = validateConfig({ ...base, credentials: { api: { ...base.credentials.api, allow: [{ methods: ['GET', 'HEAD'], paths: ['/v1/**'] }] } } }, { env: {}, baseDir: '.' })
  assert.ok(r.ok)
  assert.equal(r.config.credentials.api!.rules!.length, 1)
  const plain = validateConfig(base, { env: {}, baseDir: '.' })
  assert.ok(plain.ok)
  assert.equal(plain.config.credentials.api!.rules, undefined)
})

test('every rule that can never match is listed with its path in one run', () => {
  const found = issues({}, { allow: [{ methods: ['get'], paths: ['v1/**', '/v1/./x'] }, { methods: [], paths: ['/ok'] }] })
  assert.deepEqual(found.map((f) => f.split(':')[0]), [
    'credentials.api.allow[0].methods[0]',
    'credentials.api.allow[0].paths[0]',
    'credentials.api.allow[0].paths[1]',
    'credentials.api.allow[1].methods',
  ])
})

test('an empty allow list is an error, not a silent deny-all', () => {
  assert.match(issues({}, { allow: [] }).join('\n'), /credentials\.api\.allow: allow is empty/)
})

test('requireProxyAuth without a proxy client token, and a file sink without a file, are errors', () => {
  assert.deepEqual(issues({ audit: { sink: 'file' } }, { requireProxyAuth: true }).sort(), [
    'audit.file: audit.sink is file: set audit.file to the audit log path',
    'credentials.api.requireProxyAuth: requireProxyAuth needs a proxy client token: set proxyAuth.tokenFile (or proxyAuth.token)',
  ])
  assert.deepEqual(issues({ proxyAuth: {} }), ['proxyAuth: set proxyAuth.token or proxyAuth.tokenFile'])
  assert.match(issues({ proxyAuth: { token: 'short' } }).join(), /at least 16 characters/)
})

test('a proxy client token is compiled, required for every request by default; audit is on, to stdout, by default', () => {
  const r = validateConfig({ ...base, proxyAuth: { token: '${env:PROXY_TOKEN}' } }, { env: { PROXY_TOKEN: 'p'.repeat(24) }, baseDir: '.' })
  assert.ok(r.ok)
  assert.deepEqual(r.config.proxyAuth, { token: 'p'.repeat(24), required: true })
  assert.deepEqual({ ...r.config.audit }, { enabled: true, sink: 'stdout', file: undefined, maxSize: 10 * 1024 * 1024, keep: 5, sampling: 1 })
})
