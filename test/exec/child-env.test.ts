/**
 * What `latchkey exec` leaves in the command's environment: latchkey's own credentials are
 * removed, including those the AWS and Azure default chains read for a minted credential with no
 * provider, and a SigV4 credential gives the command placeholder keys to sign with.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AWS_PLACEHOLDER_KEYS, childEnv } from '../../src/cli/exec-command.ts'
import { parseConfigText } from '../../src/config/load.ts'

const REAL = {
  AWS_ACCESS_KEY_ID: 'AKIAREALKEY0000000000',
  AWS_SECRET_ACCESS_KEY: 'real-secret-access-key-canary',
  AWS_SESSION_TOKEN: 'real-session-token-canary',
  AWS_REGION: 'eu-west-1',
  AZURE_CLIENT_SECRET: 'real-azure-secret-canary',
  AZURE_TENANT_ID: 'tenant',
  HOME: '/home/someone',
}

function envFor(credentials: string[], parent: Record<string, string> = REAL): Record<string, string> {
  const text = ['providers: { files: { type: file, dir: /run/secrets }, dev: { type: env } }', 'credentials:', ...credentials, ''].join('\n')
  const r = parseConfigText(text, { env: {}, baseDir: '/' })
  assert.ok(r.ok, JSON.stringify(r))
  return childEnv({ parent, config: r.config, configText: text, proxyUrl: 'http://127.0.0.1:8181', caEnv: undefined }).env
}

test('a SigV4 credential on the sidecar identity: the real AWS keys are removed and placeholders given', () => {
  const env = envFor(['  lake: { hosts: [lake.s3.eu-west-1.amazonaws.com], inject: { type: aws-sigv4 } }'])
  assert.equal(env.AWS_ACCESS_KEY_ID, AWS_PLACEHOLDER_KEYS.AWS_ACCESS_KEY_ID)
  assert.equal(env.AWS_SECRET_ACCESS_KEY, AWS_PLACEHOLDER_KEYS.AWS_SECRET_ACCESS_KEY)
  assert.equal(env.AWS_SESSION_TOKEN, undefined)
  assert.equal(env.AWS_REGION, 'eu-west-1', 'a region is not a secret')
  assert.equal(env.AZURE_CLIENT_SECRET, REAL.AZURE_CLIENT_SECRET, 'nothing Azure reads is configured')
  const aws = [REAL.AWS_ACCESS_KEY_ID, REAL.AWS_SECRET_ACCESS_KEY, REAL.AWS_SESSION_TOKEN]
  for (const v of Object.values(env)) assert.ok(!aws.includes(v), 'no real AWS key reaches the command')
})

test('an AWS_PROFILE of the command is left to it: no placeholders shadow the profile', () => {
  const env = envFor(['  lake: { hosts: [lake.s3.eu-west-1.amazonaws.com], inject: { type: aws-sigv4 } }'], { AWS_PROFILE: 'analytics', HOME: '/h' })
  assert.equal(env.AWS_ACCESS_KEY_ID, undefined)
  assert.equal(env.AWS_PROFILE, 'analytics')
})

test('a SigV4 credential with keys from a provider leaves the command its own AWS keys', () => {
  const env = envFor(['  minio:', '    provider: files', '    ref: minio.json', '    hosts: ["minio.lk.test:9000"]', '    inject: { type: aws-sigv4, endpoints: { "minio.lk.test:9000": { region: us-east-1, service: s3 } } }'])
  assert.equal(env.AWS_ACCESS_KEY_ID, REAL.AWS_ACCESS_KEY_ID)
  assert.equal(env.AWS_SECRET_ACCESS_KEY, REAL.AWS_SECRET_ACCESS_KEY)
})

test('an Azure token minted from the sidecar identity: the Azure secrets are removed', () => {
  const env = envFor(['  arm: { hosts: [management.azure.com], inject: { type: azure-access-token, scopes: ["https://management.azure.com/.default"] } }'])
  assert.equal(env.AZURE_CLIENT_SECRET, undefined)
  assert.equal(env.AZURE_TENANT_ID, 'tenant', 'an identifier is not a secret')
  assert.equal(env.AWS_ACCESS_KEY_ID, REAL.AWS_ACCESS_KEY_ID, 'nothing AWS reads is configured')
})

test('without a minted credential the command keeps what latchkey does not read', () => {
  const env = envFor(['  api: { provider: dev, ref: API_TOKEN, hosts: [api.lk.test], inject: { type: bearer } }'], { ...REAL, API_TOKEN: 'x' })
  assert.equal(env.API_TOKEN, undefined, "the env provider's variable is removed")
  assert.equal(env.AWS_ACCESS_KEY_ID, REAL.AWS_ACCESS_KEY_ID)
  assert.equal(env.AZURE_CLIENT_SECRET, REAL.AZURE_CLIENT_SECRET)
})
