import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { assertNoCanary } from '../helpers/log-capture.ts'
import { runBin } from '../helpers/child.ts'
import { startAwsServer, type AwsServer } from '../servers/aws-server.ts'
import { startVaultServer, type VaultServer } from '../servers/vault-server.ts'

const VAULT_SECRET = 'doctor-vault-canary-71b3'
const AWS_SECRET = 'doctor-aws-canary-0c5e'
let dir: string
let vault: VaultServer
let aws: AwsServer

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-doctor-'))
  vault = await startVaultServer()
  vault.setSecret('secret/app', { token: VAULT_SECRET })
  aws = await startAwsServer()
  aws.setSecret('prod/app', AWS_SECRET)
})
after(async () => {
  await vault?.close()
  await aws?.close()
  await rm(dir, { recursive: true, force: true })
})

test('doctor reports each cloud provider reachable and authenticated, each credential by fingerprint, and a missing secret as a problem', async () => {
  const file = path.join(dir, 'latchkey.json')
  await writeFile(
    file,
    JSON.stringify({
      cache: { fetchAttempts: 1 },
      providers: {
        vault: { type: 'vault', address: vault.url, auth: { method: 'token', token: vault.rootToken } },
        aws: { type: 'aws', region: aws.region, endpoint: aws.url },
      },
      credentials: {
        'from-vault': { provider: 'vault', ref: 'secret/data/app', field: 'token', hosts: ['a.example.com'], inject: { type: 'bearer' } },
        'from-aws': { provider: 'aws', ref: 'prod/app', hosts: ['b.example.com'], inject: { type: 'bearer' } },
        'not-there': { provider: 'aws', ref: 'prod/missing', hosts: ['c.example.com'], inject: { type: 'bearer' } },
      },
    }),
  )
  const r = await runBin(['doctor', '-c', file], {
    env: { AWS_ACCESS_KEY_ID: aws.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: aws.credentials.secretAccessKey, AWS_EC2_METADATA_DISABLED: 'true' },
    timeoutMs: 60_000,
  })
  assert.equal(r.code, 1, r.stdout + r.stderr)
  assert.match(r.stdout, /ok {3}vault \(vault\): reachable, authenticated/)
  assert.match(r.stdout, /ok {3}aws \(aws\): reachable, authenticated/)
  assert.match(r.stdout, /ok {3}from-vault: sha256:[0-9a-f]{8}/)
  assert.match(r.stdout, /ok {3}from-aws: sha256:[0-9a-f]{8}/)
  assert.match(r.stdout, /FAIL not-there: secret_not_found: .*ResourceNotFoundException/)
  assertNoCanary([r.stdout, r.stderr], [VAULT_SECRET, AWS_SECRET, vault.rootToken, aws.credentials.secretAccessKey])
})
