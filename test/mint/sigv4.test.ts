import assert from 'node:assert/strict'
import { createHash, createHmac } from 'node:crypto'
import { Readable } from 'node:stream'
import { after, before, test } from 'node:test'
import { request } from 'undici'
import { LatchkeyError } from '../../src/errors.ts'
import { parseAwsKeys, Sha256, signingScope, SigV4Signer, type AwsKeys } from '../../src/mint/sigv4.ts'
import { startAwsServer, type AwsServer } from '../servers/aws-server.ts'
import { startS3Server, type S3Server } from '../servers/s3-server.ts'

const KEYS: AwsKeys = { accessKeyId: 'AKIAMINTTEST00000001', secretAccessKey: 'canary-aws-secret-key-5f0c1d9e2b7a', sessionToken: 'canary-aws-session-token-8e4b' }
/** What a client holding dummy keys sends: placeholders the signer must replace. */
const DUMMY = {
  authorization: 'AWS4-HMAC-SHA256 Credential=AKIADUMMY/20200101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=' + '0'.repeat(64),
  'x-amz-date': '20200101T000000Z',
  'x-amz-security-token': 'dummy-token',
}

let s3: S3Server
let sm: AwsServer
let signer: SigV4Signer

before(async () => {
  s3 = await startS3Server({ region: 'eu-central-1', keys: [KEYS as { accessKeyId: string; secretAccessKey: string; sessionToken: string }] })
  sm = await startAwsServer()
  signer = new SigV4Signer({ endpoints: { [s3.host]: { region: 'eu-central-1', service: 's3' }, [`127.0.0.1:${sm.port}`]: { region: sm.region, service: 'secretsmanager' } }, maxBodyBytes: 1024 })
})

after(async () => {
  await s3?.close()
  await sm?.close()
})

async function send(method: string, path: string, headers: Record<string, string>, body?: Buffer | Readable, bufferBody?: Buffer) {
  const url = new URL(path, s3.url)
  const plan = signer.plan(url, headers)
  const signed = await signer.sign({ method, url, headers, plan, body: bufferBody, keys: KEYS })
  const r = await request(url, { method: method as 'GET', headers: signed, body })
  return { status: r.statusCode, body: await r.body.text(), signed, plan }
}

test('PUT with UNSIGNED-PAYLOAD: a streamed body is signed without being read, the dummy placeholders are replaced, and an independent verifier accepts it', async () => {
  const data = Buffer.alloc(4 * 1024 * 1024, 7)
  const r = await send('PUT', '/bucket/dir/a b+ü.bin', { ...DUMMY, 'content-length': String(data.length), 'content-type': 'application/octet-stream' }, Readable.from([data.subarray(0, 1 << 20), data.subarray(1 << 20)]))
  assert.equal(r.status, 200, r.body)
  assert.deepEqual(r.plan, { mode: 'stream', payloadHash: 'UNSIGNED-PAYLOAD' })
  assert.match(r.signed.authorization ?? '', /^AWS4-HMAC-SHA256 Credential=AKIAMINTTEST00000001\/\d{8}\/eu-central-1\/s3\/aws4_request/)
  assert.equal(r.signed['x-amz-security-token'], KEYS.sessionToken)
  assert.notEqual(r.signed['x-amz-date'], DUMMY['x-amz-date'])
  assert.ok(s3.objects.get('bucket/dir/a b+ü.bin')?.equals(data))
})

test('GET of an object and a ListObjectsV2 query are signed and accepted', async () => {
  s3.objects.set('bucket/k1', Buffer.from('hello'))
  const got = await send('GET', '/bucket/k1', { ...DUMMY, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' })
  assert.equal(got.status, 200, got.body)
  assert.equal(got.body, 'hello')
  const list = await send('GET', '/bucket?list-type=2&prefix=k&encoding-type=url', { ...DUMMY })
  assert.equal(list.status, 200, list.body)
  assert.match(list.body, /<Key>k1<\/Key>/)
})

test("a client's own hex payload hash is kept (S3 checks it against the bytes), so a wrong one is refused by the store", async () => {
  const body = Buffer.from('payload')
  const good = createHash('sha256').update(body).digest('hex')
  const ok = await send('PUT', '/bucket/hashed', { 'content-length': String(body.length), 'x-amz-content-sha256': good }, body)
  assert.equal(ok.status, 200, ok.body)
  const wrong = await send('PUT', '/bucket/hashed', { 'content-length': String(body.length), 'x-amz-content-sha256': createHash('sha256').update('other').digest('hex') }, body)
  assert.equal(wrong.status, 400)
  assert.match(wrong.body, /XAmzContentSHA256Mismatch/)
})

test('signed aws-chunked bodies and presigned URLs are refused with a clear 400 before any byte is read', () => {
  const url = new URL('/bucket/x', s3.url)
  assert.throws(
    () => signer.plan(url, { 'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD', 'content-length': '100' }),
    (e: unknown) => e instanceof LatchkeyError && e.code === 'sigv4_unsupported' && /payload_signing_enabled/.test(e.message),
  )
  assert.deepEqual(signer.plan(url, { 'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER', 'content-length': '100' }), { mode: 'stream', payloadHash: 'STREAMING-UNSIGNED-PAYLOAD-TRAILER' })
  assert.throws(() => signer.plan(new URL('/bucket/x?X-Amz-Signature=abc', s3.url), {}), (e: unknown) => e instanceof LatchkeyError && e.code === 'sigv4_unsupported' && /presigned/.test(e.message))
})

test('a service that needs the payload hash gets the body buffered up to the limit (Secrets Manager verifies it), and a larger body is refused', async () => {
  sm.setSecret('app', 'v1')
  const creds = { ...sm.credentials }
  const url = new URL('/', sm.url)
  const body = Buffer.from(JSON.stringify({ SecretId: 'app' }))
  const headers = { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'secretsmanager.GetSecretValue', 'content-length': String(body.length) }
  const plan = signer.plan(url, headers)
  assert.deepEqual(plan, { mode: 'buffer', limit: 1024 })
  const signed = await signer.sign({ method: 'POST', url, headers, plan, body, keys: creds })
  const r = await request(url, { method: 'POST', headers: signed, body })
  assert.equal(r.statusCode, 200, await r.body.text())
  assert.throws(() => signer.plan(url, { ...headers, 'content-length': '5000' }), (e: unknown) => e instanceof LatchkeyError && e.code === 'request_too_large')
})

test('a wrong secret key is refused by the verifier (the test server does check signatures)', async () => {
  const url = new URL('/bucket/k1', s3.url)
  const signed = await signer.sign({ method: 'GET', url, headers: {}, plan: { mode: 'empty' }, keys: { ...KEYS, secretAccessKey: 'wrong-secret-key-000000000000000' } })
  const r = await request(url, { headers: signed })
  assert.equal(r.statusCode, 403)
  assert.match(await r.body.text(), /SignatureDoesNotMatch/)
})

test('region and service are derived from AWS host names, and set or named endpoints win', () => {
  const cases: Array<[string, { region: string; service: string } | undefined]> = [
    ['s3.amazonaws.com', { region: 'us-east-1', service: 's3' }],
    ['s3.eu-west-1.amazonaws.com', { region: 'eu-west-1', service: 's3' }],
    ['my-bucket.s3.eu-west-1.amazonaws.com', { region: 'eu-west-1', service: 's3' }],
    ['my.dotted.bucket.s3.us-west-2.amazonaws.com', { region: 'us-west-2', service: 's3' }],
    ['my-bucket.s3.amazonaws.com', { region: 'us-east-1', service: 's3' }],
    ['s3-eu-west-1.amazonaws.com', { region: 'eu-west-1', service: 's3' }],
    ['s3.dualstack.ap-south-1.amazonaws.com', { region: 'ap-south-1', service: 's3' }],
    ['secretsmanager.eu-west-1.amazonaws.com', { region: 'eu-west-1', service: 'secretsmanager' }],
    ['sts.amazonaws.com', { region: 'us-east-1', service: 'sts' }],
    ['s3.cn-north-1.amazonaws.com.cn', { region: 'cn-north-1', service: 's3' }],
    ['minio.internal:9000', undefined],
    ['amazonaws.com.evil.net', undefined],
  ]
  for (const [host, want] of cases) assert.deepEqual(signingScope(host, {}), want, host)
  assert.deepEqual(signingScope('minio.internal:9000', { endpoints: { 'minio.internal:9000': { region: 'us-east-1', service: 's3' } } }), { region: 'us-east-1', service: 's3' })
  assert.deepEqual(signingScope('s3.eu-west-1.amazonaws.com', { region: 'eu-north-1' }), { region: 'eu-north-1', service: 's3' })
})

test('keys are read from a JSON secret in either naming, and a secret without them is invalid_secret', () => {
  assert.deepEqual(parseAwsKeys(JSON.stringify({ AccessKeyId: 'A', SecretAccessKey: 'S', SessionToken: 'T' })), { accessKeyId: 'A', secretAccessKey: 'S', sessionToken: 'T' })
  assert.deepEqual(parseAwsKeys(JSON.stringify({ aws_access_key_id: 'A', aws_secret_access_key: 'S' })), { accessKeyId: 'A', secretAccessKey: 'S', sessionToken: undefined })
  assert.throws(() => parseAwsKeys('AKIA:secret'), (e: unknown) => e instanceof LatchkeyError && e.code === 'invalid_secret' && !e.message.includes('secret"'))
})

test("the signer's SHA-256 gives node:crypto's digests for string, Buffer, Uint8Array and ArrayBuffer input, keyed and not, and resets", async () => {
  const key = Buffer.from([0, 1, 2, 250, 251, 252, 0x80, 0xff])
  const hex = (u: Uint8Array) => Buffer.from(u).toString('hex')
  const plain = new Sha256()
  plain.update('héllo ')
  plain.update(new Uint8Array(Buffer.from('wörld')))
  assert.equal(hex(await plain.digest()), createHash('sha256').update('héllo wörld').digest('hex'))
  for (const secret of [key, new Uint8Array(key), key.buffer.slice(key.byteOffset, key.byteOffset + key.byteLength), 'AWS4sëcret']) {
    const h = new Sha256(secret)
    h.update(Buffer.from('20260101'))
    h.update('/eu-west-1', 'utf8')
    const want = createHmac('sha256', typeof secret === 'string' ? Buffer.from(secret) : Buffer.from(secret as ArrayBuffer)).update('20260101/eu-west-1').digest('hex')
    assert.equal(hex(await h.digest()), want)
    h.reset()
    h.update('x')
    assert.equal(hex(await h.digest()), createHmac('sha256', typeof secret === 'string' ? Buffer.from(secret) : Buffer.from(secret as ArrayBuffer)).update('x').digest('hex'))
  }
})
