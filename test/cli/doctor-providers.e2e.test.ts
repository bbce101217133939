import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { assertNoCanary } from '../helpers/log-capture.ts'
import { runBin, type Ran } from '../helpers/child.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startAwsServer, type AwsServer } from '../servers/aws-server.ts'
import { startAzureServer, type AzureServer } from '../servers/azure-server.ts'
import { startGcpServer, type GcpServer } from '../servers/gcp-server.ts'
import { startVaultServer, type VaultServer } from '../servers/vault-server.ts'

const VAULT_SECRET = 'doctor-vault-canary-71b3'
const AWS_SECRET = 'doctor-aws-canary-0c5e'
const AZURE_SECRET = 'doctor-azure-canary-4d2a'
const GCP_SECRET = 'doctor-gcp-canary-9e61'
const PROFILE_KEY = { accessKeyId: 'AKIAPROFILE000000002', secretAccessKey: 'doctor-profile-secret-key-canary-0000000' }
const IRSA_ROLE = 'arn:aws:iam::123456789012:role/latchkey-irsa'
const IRSA_TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cGlwZWxpbmVzOmxhdGNoa2V5In0.doctor-irsa-canary-sig'

let dir: string
let vault: VaultServer
let aws: AwsServer
let kv: AzureServer
let sm: GcpServer

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-doctor-'))
  const ca = await createTestCa()
  await writeFile(path.join(dir, 'ca.pem'), ca.caPem)
  vault = await startVaultServer()
  vault.setSecret('secret/app', { token: VAULT_SECRET })
  aws = await startAwsServer({ credentials: [{ accessKeyId: 'AKIATESTLOCAL0000001', secretAccessKey: 'local-secret-key-for-sigv4-tests-000000' }, PROFILE_KEY], webIdentityRoles: { [IRSA_ROLE]: { token: IRSA_TOKEN } } })
  aws.setSecret('prod/app', AWS_SECRET)
  kv = await startAzureServer({ tls: await ca.issue(['127.0.0.1']) })
  kv.setSecret('api-token', AZURE_SECRET)
  sm = await startGcpServer({ tls: await ca.issue(['127.0.0.1']) })
  sm.setSecret('api-token', GCP_SECRET)
  await writeFile(path.join(dir, 'subject-token'), sm.subjectToken)
  await writeFile(path.join(dir, 'gcp-credentials.json'), sm.externalAccountJson(path.join(dir, 'subject-token')))
})
after(async () => {
  await Promise.all([vault?.close(), aws?.close(), kv?.close(), sm?.close()])
  await rm(dir, { recursive: true, force: true })
})

const STATIC_KEYS = () => ({ AWS_ACCESS_KEY_ID: aws.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: aws.credentials.secretAccessKey })

/** `latchkey doctor -c FILE` with `config` and only `env` (plus PATH, NO_PROXY, a temporary HOME, no instance metadata). */
async function doctor(name: string, config: Record<string, unknown>, env: Record<string, string>): Promise<Ran> {
  const file = path.join(dir, `${name}.json`)
  await writeFile(file, JSON.stringify({ cache: { fetchAttempts: 1 }, ...config }))
  return runBin(['doctor', '-c', file], { env: { HOME: dir, AWS_EC2_METADATA_DISABLED: 'true', ...env }, timeoutMs: 60_000 })
}

const secrets = () => [VAULT_SECRET, AWS_SECRET, AZURE_SECRET, GCP_SECRET, vault.rootToken, aws.credentials.secretAccessKey, PROFILE_KEY.secretAccessKey, IRSA_TOKEN, kv.identityHeader, sm.subjectToken]
const credential = (provider: string, ref: string, host: string) => ({ provider, ref, hosts: [host], inject: { type: 'bearer' } })

test('doctor reports each cloud provider reachable and authenticated (as whom, when known), each credential by fingerprint, and a missing secret as a problem', async () => {
  const r = await doctor(
    'all',
    {
      providers: {
        vault: { type: 'vault', address: vault.url, auth: { method: 'token', token: vault.rootToken } },
        aws: { type: 'aws', region: aws.region, endpoint: aws.url },
        kv: { type: 'azure', vaultUrl: kv.vaultUrl, caFile: './ca.pem', disableChallengeResourceVerification: true },
        sm: { type: 'gcp', apiEndpoint: '127.0.0.1', port: sm.port, credentialsFile: './gcp-credentials.json', caFile: './ca.pem', project: sm.projectId },
      },
      credentials: {
        'from-vault': { ...credential('vault', 'secret/data/app', 'a.example.com'), field: 'token' },
        'from-aws': credential('aws', 'prod/app', 'b.example.com'),
        'from-azure': credential('kv', 'api-token', 'c.example.com'),
        'from-gcp': credential('sm', 'api-token', 'd.example.com'),
        'not-there': credential('sm', 'missing', 'e.example.com'),
        'not-in-kv': credential('kv', 'missing', 'f.example.com'),
      },
    },
    { ...STATIC_KEYS(), AWS_ENDPOINT_URL_STS: aws.url, IDENTITY_ENDPOINT: kv.identityEndpoint, IDENTITY_HEADER: kv.identityHeader },
  )
  assert.equal(r.code, 1, r.stdout + r.stderr)
  assert.match(r.stdout, /ok {3}vault \(vault\): reachable, authenticated/)
  assert.match(r.stdout, /ok {3}aws \(aws\): reachable, authenticated as arn:aws:iam::123456789012:user\/latchkey-test — /)
  assert.match(r.stdout, new RegExp(`ok {3}kv \\(azure\\): reachable, authenticated as oid=${kv.principal.oid} appid=${kv.principal.appid}`))
  assert.match(r.stdout, /ok {3}sm \(gcp\): reachable, authenticated as credentials file \S+\/gcp-credentials\.json — endpoint 127\.0\.0\.1:\d+, project latchkey-test$/m)
  for (const c of ['from-vault', 'from-aws', 'from-azure', 'from-gcp']) assert.match(r.stdout, new RegExp(`ok {3}${c}: sha256:[0-9a-f]{8}`))
  assert.match(r.stdout, /FAIL not-there: secret_not_found: .*NOT_FOUND/)
  assert.match(r.stdout, /FAIL not-in-kv: secret_not_found: .*SecretNotFound/)
  assert.match(r.stdout, /2 problems$/m)
  assert.ok(aws.log.some((l) => l.target === 'sts.GetCallerIdentity' && l.status === 200), 'STS answered GetCallerIdentity')
  assertNoCanary([r.stdout, r.stderr], secrets())
})

test('doctor tells a failed Google token exchange (not authenticated) from an unreachable Secret Manager', async () => {
  sm.failTokensNext(50, 400)
  let r: Ran
  try {
    r = await doctor('gcp-token', { providers: { sm: { type: 'gcp', apiEndpoint: '127.0.0.1', port: sm.port, credentialsFile: './gcp-credentials.json', caFile: './ca.pem', project: sm.projectId } }, credentials: { c: credential('sm', 'api-token', 'a.example.com') } }, {})
  } finally {
    sm.failTokensNext(0, 400)
  }
  assert.equal(r.code, 1, r.stdout + r.stderr)
  assert.match(r.stdout, /FAIL sm \(gcp\): reachable, not authenticated — .*access token.*endpoint 127\.0\.0\.1:\d+.* answers/)
  const gone = await startGcpServer()
  const port = gone.port
  await gone.close()
  const down = await doctor('gcp-down', { providers: { sm: { type: 'gcp', apiEndpoint: '127.0.0.1', port, credentialsFile: './gcp-credentials.json', caFile: './ca.pem', project: sm.projectId } }, credentials: {} }, {})
  assert.match(down.stdout, /FAIL sm \(gcp\): unreachable, /)
  assertNoCanary([r.stdout, r.stderr, down.stdout, down.stderr], secrets())
})

test('doctor tells a failed Azure token request (not authenticated) from an unreachable vault', async () => {
  const provider = (vaultUrl: string) => ({ providers: { kv: { type: 'azure', vaultUrl, caFile: './ca.pem', disableChallengeResourceVerification: true } }, credentials: {} })
  const env = () => ({ IDENTITY_ENDPOINT: kv.identityEndpoint, IDENTITY_HEADER: kv.identityHeader })
  kv.failTokensNext(50, 400)
  let r: Ran
  try {
    r = await doctor('azure-token', provider(kv.vaultUrl), env())
  } finally {
    kv.failTokensNext(0, 400)
  }
  assert.equal(r.code, 1, r.stdout + r.stderr)
  assert.match(r.stdout, /FAIL kv \(azure\): reachable, not authenticated — .*token request.*; vault https:\/\/127\.0\.0\.1:\d+ answers/)
  const gone = await startGcpServer()
  const port = gone.port
  await gone.close()
  const down = await doctor('azure-down', provider(`https://127.0.0.1:${port}`), { IDENTITY_ENDPOINT: `http://127.0.0.1:${port}/token`, IDENTITY_HEADER: kv.identityHeader })
  assert.match(down.stdout, /FAIL kv \(azure\): unreachable, not authenticated — .*is not reachable/)
  assertNoCanary([r.stdout, r.stderr, down.stdout, down.stderr], secrets())
})

describe('the AWS default credential chain', () => {
  // The region is latchkey's to know (config or AWS_REGION); the chain only supplies credentials.
  const config = () => ({ providers: { aws: { type: 'aws', region: aws.region, endpoint: aws.url } }, credentials: { c: credential('aws', 'prod/app', 'a.example.com') } })

  test('a named profile in shared credentials and config files signs every call with its key', async () => {
    await writeFile(path.join(dir, 'aws-credentials'), `[default]\naws_access_key_id = AKIANOTTHEPROFILE001\naws_secret_access_key = wrong-wrong-wrong\n\n[pipeline]\naws_access_key_id = ${PROFILE_KEY.accessKeyId}\naws_secret_access_key = ${PROFILE_KEY.secretAccessKey}\n`)
    await writeFile(path.join(dir, 'aws-config'), '[profile pipeline]\nregion = eu-west-1\n')
    const before = aws.log.length
    const r = await doctor('aws-profile', config(), { AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'aws-credentials'), AWS_CONFIG_FILE: path.join(dir, 'aws-config'), AWS_PROFILE: 'pipeline', AWS_ENDPOINT_URL_STS: aws.url })
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, /ok {3}aws \(aws\): reachable, authenticated as arn:aws:iam::123456789012:user\/latchkey-test/)
    const seen = aws.log.slice(before)
    assert.deepEqual([...new Set(seen.map((l) => l.target))].sort(), ['secretsmanager.GetSecretValue', 'secretsmanager.ListSecrets', 'sts.GetCallerIdentity'])
    assert.ok(seen.every((l) => l.accessKeyId === PROFILE_KEY.accessKeyId && l.status === 200), 'every call was signed with the profile key and verified')
    assertNoCanary([r.stdout, r.stderr], secrets())
  })

  test('IRSA web identity (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE) is exchanged at STS and the session key reads the secret', async () => {
    await writeFile(path.join(dir, 'irsa-token'), IRSA_TOKEN)
    const before = aws.log.length
    const r = await doctor('aws-irsa', config(), {
      AWS_ROLE_ARN: IRSA_ROLE,
      AWS_WEB_IDENTITY_TOKEN_FILE: path.join(dir, 'irsa-token'),
      AWS_ROLE_SESSION_NAME: 'latchkey-irsa',
      AWS_ENDPOINT_URL_STS: aws.url,
    })
    assert.equal(r.code, 0, r.stdout + r.stderr)
    const session = aws.sessions.find((s) => s.via === 'web-identity' && s.roleArn === IRSA_ROLE)
    assert.ok(session, 'STS AssumeRoleWithWebIdentity issued a session')
    assert.match(r.stdout, /ok {3}aws \(aws\): reachable, authenticated as arn:aws:sts::123456789012:assumed-role\/latchkey-irsa\/latchkey-irsa/)
    const seen = aws.log.slice(before)
    assert.equal(seen.filter((l) => l.target === 'sts.AssumeRoleWithWebIdentity').length, 1, 'one exchange serves every call')
    const signed = seen.filter((l) => l.target !== 'sts.AssumeRoleWithWebIdentity')
    assert.ok(signed.some((l) => l.target === 'secretsmanager.GetSecretValue'))
    assert.ok(signed.every((l) => l.accessKeyId === session.accessKeyId && l.status === 200), 'every signed call used the session key')
    assertNoCanary([r.stdout, r.stderr], [...secrets(), session.secretAccessKey, session.sessionToken])
  })
})
