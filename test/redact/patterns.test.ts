import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { PATTERN_NAMES, scrubPatterns } from '../../src/redact/patterns.ts'

const R = '[REDACTED]'
const JWT = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U'

/** A line as pino would write it, with `msg` carrying `text`. */
function line(text: string): string {
  return JSON.stringify({ level: 30, msg: text })
}

function msgOf(scrubbed: string): string {
  return (JSON.parse(scrubbed) as { msg: string }).msg
}

describe('scrubPatterns', () => {
  test('every rule has a name', () => {
    assert.ok(PATTERN_NAMES.length >= 10)
  })

  const cases: Array<[string, string, string]> = [
    ['a Bearer token', 'sent Authorization Bearer abc.DEF-123_xyz~+/= upstream', `sent Authorization Bearer ${R} upstream`],
    ['a lower-case bearer token', 'bearer 0123456789abcdef', `bearer ${R}`],
    ['a long all-letter Bearer token', 'Bearer abcdefghijklmnopqrstuvwxyzABCDEF', `Bearer ${R}`],
    ['a Basic credential', 'Basic dXNlcjpjYW5hcnktcGFzcw== was refused', `Basic ${R} was refused`],
    ['an unpadded Basic credential with digits', 'Basic dXNlcjpwYQ1', `Basic ${R}`],
    ['a JWT', `token is ${JWT} here`, `token is ${R} here`],
    ['URL userinfo', 'GET https://alice:s3cr3t@db.example.com:5432/x', `GET https://${R}@db.example.com:5432/x`],
    ['URL userinfo with an @ in the password', 'redis://user:p@ss@cache.internal/0', `redis://${R}@cache.internal/0`],
    ['a token as URL user', 'clone https://ghs_abc123@github.com/o/r.git', `clone https://${R}@github.com/o/r.git`],
    ['a query parameter', 'https://h/cb?code=1&access_token=abc123&state=x', `https://h/cb?code=1&access_token=${R}&state=x`],
    ['a query string logged on its own', 'access_token=abc123&state=x', `access_token=${R}&state=x`],
    ['a form body parameter', 'grant_type=client_credentials&client_secret=shh-123', `grant_type=client_credentials&client_secret=${R}`],
    ['an AWS access key id', 'key AKIAIOSFODNN7EXAMPLE used', `key ${R} used`],
    ['an AWS session key id', 'ASIAY34FZKBOKMUTVV7A', R],
    ['an AWS secret key in INI form', 'aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', `aws_secret_access_key = ${R}`],
    ['an AWS secret key in env form', 'AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', `AWS_SECRET_ACCESS_KEY=${R}`],
    ['an X-Vault-Token header line', 'X-Vault-Token: s.abcdefghijklmnop', `X-Vault-Token: ${R}`],
    ['a Vault service token', 'token hvs.CAESIJlWl2tmTZ5wAvRXrpT0TpnK3Xq8 expired', `token ${R} expired`],
    ['an Authorization header line', 'request:\r\nAuthorization: Digest username="x", response="y"\r\nHost: h', `request:\r\nAuthorization: ${R}\r\nHost: h`],
    ['a Cookie header line', 'Cookie: session=abc; other=1', `Cookie: ${R}`],
    ['a GitHub token', 'ghp_0123456789abcdefghijklmnopqrstuvwxyzAB', R],
    ['a Google API key', 'key=AIzaSyA-0123456789abcdefghijklmnopqrstu', `key=${R}`],
  ]
  for (const [what, input, expected] of cases) {
    test(`${what} is redacted inside a JSON log line`, () => {
      assert.equal(msgOf(scrubPatterns(line(input))), expected)
    })
  }

  test('a PEM private key block is redacted, whole or cut short', () => {
    const pem = '-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA75\nabc\n-----END RSA PRIVATE KEY-----'
    assert.equal(msgOf(scrubPatterns(line(`key: ${pem} (loaded)`))), `key: ${R} (loaded)`)
    assert.equal(msgOf(scrubPatterns(line('-----BEGIN PRIVATE KEY-----\nMIIEv'))), R)
    assert.equal(msgOf(scrubPatterns(line('-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----'))), R)
  })

  test('a public certificate is not redacted', () => {
    const cert = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----'
    assert.equal(msgOf(scrubPatterns(line(cert))), cert)
  })

  test('values of secret-named JSON keys are replaced in any case and spelling', () => {
    const doc = {
      password: 'p1', passwd: 'p2', secret: 's', token: 't', api_key: 'k', apikey: 'k2', apiKey: 'k3', access_token: 'a',
      refresh_token: 'r', client_secret: 'c', clientSecret: 'c2', private_key: 'pk', 'x-api-key': 'x', 'X-Api-Key': 'x2',
      Authorization: 'Bearer z', aws_secret_access_key: 'sk', secretAccessKey: 'sk2', sessionToken: 'st',
    }
    const out = JSON.parse(scrubPatterns(JSON.stringify(doc))) as Record<string, string>
    for (const [k, v] of Object.entries(out)) assert.equal(v, R, k)
  })

  test('escaped quotes inside a secret JSON value do not end it early', () => {
    const out = scrubPatterns(JSON.stringify({ password: 'a"b\\"c', next: 'kept' }))
    assert.deepEqual(JSON.parse(out), { password: R, next: 'kept' })
  })

  test('secret keys in a JSON document logged as a string (a response body) are replaced', () => {
    const body = JSON.stringify({ access_token: 'tok"en\\value', token_type: 'bearer', expires_in: 3600 })
    const out = scrubPatterns(JSON.stringify({ data: body }))
    const data = JSON.parse((JSON.parse(out) as { data: string }).data) as Record<string, unknown>
    assert.deepEqual(data, { access_token: R, token_type: 'bearer', expires_in: 3600 })
  })

  test('non-string values and non-secret keys are left alone', () => {
    const doc = { token: null, password: 3, tokenType: 'bearer', credential: 'github', secrets: ['a'], passwordPolicy: 'strong' }
    const text = JSON.stringify(doc)
    assert.equal(scrubPatterns(text), text)
  })

  test('redaction is idempotent', () => {
    const once = scrubPatterns(line(`Bearer abc123def and ${JWT} and https://u:p@h/ and AKIAIOSFODNN7EXAMPLE`))
    assert.equal(scrubPatterns(once), once)
  })

  test('ordinary log content is untouched', () => {
    const lines = [
      { level: 30, time: '2025-01-01T00:00:00.000Z', name: 'latchkey', event: 'request', method: 'GET', credential: 'github-token', host: 'api.github.com', path: '/repos/octo/hello/pulls', status: 200, durationMs: 12, outcome: 'injected', msg: 'request' },
      { level: 40, event: 'stale_served', credential: 'vault-db-password', code: 'provider_unavailable', msg: 'provider failed; serving the previous value within maxStale' },
      { level: 30, event: 'secret_fetched', credential: 'aws-key', provider: 'aws-sm', fingerprint: 'sha256:1a2b3c4d', ttlMs: 300000, msg: 'secret fetched' },
      { level: 30, msg: 'injects a bearer token into the Authorization header for https://api.example.com:8443/v1' },
      { level: 30, msg: 'Basic auth configured; token refresh in 5m; see https://docs.example.com/path?x=1#frag' },
      { level: 30, event: 'config_warning', msg: 'credential "stripe" uses header authorization; Bearer scheme; cookie jar off' },
      { level: 50, err: { type: 'ProviderError', message: 'secret not found: prod/db', code: 'secret_not_found', status: 503 }, msg: 'fetch failed' },
      { level: 30, msg: 'listening on http://127.0.0.1:8080 and admin on http://[::1]:9090/metrics (took 1.5s)' },
    ]
    for (const l of lines) {
      const text = JSON.stringify(l)
      assert.equal(scrubPatterns(text), text)
    }
  })
})
