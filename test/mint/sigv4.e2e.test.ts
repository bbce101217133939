/**
 * `inject.type: aws-sigv4` end to end: a client with dummy (or no) keys talks to a local
 * S3-compatible store that verifies every SigV4 signature itself (test/servers/s3-server.ts,
 * written from the AWS specification with node:crypto), through each way into latchkey: a
 * route, the forward proxy, an intercepted CONNECT tunnel and the in-process shim.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import { after, before, test } from 'node:test'
import { Agent, ProxyAgent, request } from 'undici'
import type { Daemon } from '../../src/daemon.ts'
import { createLatchkeyInterceptor } from '../../src/shim/interceptor.ts'
import { exitedWithin, startBin } from '../helpers/child.ts'
import { baseEnv, run } from '../clients/spawn.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { assertNoCanary, captureLogs } from '../helpers/log-capture.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { startAwsServer, type AwsServer } from '../servers/aws-server.ts'
import { startS3Server, type S3Server } from '../servers/s3-server.ts'

const BIN = path.resolve(import.meta.dirname, '..', '..', 'bin', 'latchkey.js')

const KEYS = { accessKeyId: 'AKIASIGV4E2E00000001', secretAccessKey: 'canary-aws-secret-e2e-3b9f0c71d2a4', sessionToken: 'canary-aws-session-e2e-6d1e28+/=a7' }
const ROTATED = { accessKeyId: 'AKIASIGV4E2E00000002', secretAccessKey: 'canary-aws-secret-rotated-90ce4f1a', sessionToken: 'canary-aws-session-rotated-27b5d3' }
const CHAIN = { accessKeyId: 'AKIASIGV4CHAIN000001', secretAccessKey: 'canary-aws-secret-chain-5e07b2c9', sessionToken: 'canary-aws-session-chain-c41a8d' }
/** What a client configured with dummy keys sends; latchkey must replace every one. */
const DUMMY = {
  authorization: 'AWS4-HMAC-SHA256 Credential=AKIADUMMY/20200101/eu-central-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=' + '0'.repeat(64),
  'x-amz-date': '20200101T000000Z',
  'x-amz-security-token': 'dummy-session-token',
  'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
}

let dir: string
let s3: S3Server
let s3tls: S3Server
let sm: AwsServer
let echo: Upstream
let daemon: Daemon
let latchkeyCa: string
const s3Keys = [KEYS]
const logs = captureLogs()
const client = new Agent()

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-sigv4-'))
  const ca = await createTestCa()
  await writeFile(path.join(dir, 'upstream-ca.pem'), ca.caPem)
  await writeFile(path.join(dir, 'keys.json'), JSON.stringify(KEYS))
  s3 = await startS3Server({ region: 'eu-central-1', keys: s3Keys, keepBodiesUpTo: 16 * 1024 * 1024 })
  s3tls = await startS3Server({ region: 'eu-central-1', keys: s3Keys, tls: await ca.issue(['localhost']) })
  sm = await startAwsServer()
  await writeFile(path.join(dir, 'sm-keys.json'), JSON.stringify(sm.credentials))
  // A misbehaving service that reflects what it got: the session token header, and the keys in several encodings.
  echo = await startUpstream()
  echo.handle((req, res) => {
    const token = String(req.headers['x-amz-security-token'])
    res.writeHead(200, { 'content-type': 'text/plain', 'x-echo-token': token, 'x-echo-key': Buffer.from(KEYS.secretAccessKey).toString('base64') })
    res.end(`token=${token} key=${KEYS.secretAccessKey} url=${encodeURIComponent(KEYS.sessionToken)} b64=${Buffer.from(KEYS.sessionToken).toString('base64')}`)
  })
  const tlsPort = new URL(s3tls.url).port
  daemon = await startTestDaemon({
    baseDir: dir,
    logStream: logs.stream,
    config: {
      cache: { bustCooldown: '10ms' },
      upstream: { caFile: 'upstream-ca.pem' },
      intercept: { enabled: true, caDir: 'ca' },
      providers: { files: { type: 'file', dir: '.' } },
      credentials: {
        s3: { provider: 'files', ref: 'keys.json', hosts: [s3.host], insecure: true, inject: { type: 'aws-sigv4', endpoints: { [s3.host]: { region: 'eu-central-1', service: 's3' } } } },
        s3tls: { provider: 'files', ref: 'keys.json', hosts: [`localhost:${tlsPort}`], inject: { type: 'aws-sigv4', region: 'eu-central-1', service: 's3' } },
        echo: { provider: 'files', ref: 'keys.json', hosts: [`127.0.0.1:${echo.port}`], insecure: true, scrubResponses: true, inject: { type: 'aws-sigv4', region: 'us-east-1', service: 'execute-api' } },
        sm: { provider: 'files', ref: 'sm-keys.json', hosts: [`127.0.0.1:${sm.port}`], insecure: true, inject: { type: 'aws-sigv4', region: sm.region, service: 'secretsmanager', maxBodyBytes: 4096 } },
      },
      routes: { s3: { upstream: s3.url }, sm: { upstream: sm.url }, echo: { upstream: echo.url } },
    },
  })
  latchkeyCa = await readFile(path.join(dir, 'ca', 'ca.pem'), 'utf8')
})

after(async () => {
  await daemon?.close(500)
  await client.close()
  await s3?.close()
  await s3tls?.close()
  await sm?.close()
  await echo?.close()
  await rm(dir, { recursive: true, force: true })
  // Every secret key and session token this file handled, in every encoding, at trace level.
  assertNoCanary(logs.lines(), [KEYS.secretAccessKey, KEYS.sessionToken, ROTATED.secretAccessKey, ROTATED.sessionToken, sm.credentials.secretAccessKey])
})

test('canaries: the secret key and session token reach neither the client (a reflecting upstream, scrubResponses) nor any log line at trace, in any encoding', async () => {
  const r = await request(`${daemon.proxyUrl}/echo/reflect`, { dispatcher: client })
  const body = await r.body.text()
  assert.equal(r.statusCode, 200)
  assert.match(String(echo.received.at(-1)?.headers.authorization), /^AWS4-HMAC-SHA256 Credential=AKIASIGV4E2E00000001\/\d{8}\/us-east-1\/execute-api\/aws4_request/)
  assertNoCanary([JSON.stringify(r.headers), body], [KEYS.secretAccessKey, KEYS.sessionToken])
  // A log line that quotes them (as a buggy library might): the scrubber knows every form.
  daemon.logger.trace(
    { event: 'canary_probe', headers: { 'x-amz-security-token': KEYS.sessionToken }, detail: [KEYS.secretAccessKey, Buffer.from(KEYS.secretAccessKey).toString('base64'), encodeURIComponent(KEYS.sessionToken), JSON.stringify({ k: KEYS.sessionToken })] },
    `probe ${KEYS.secretAccessKey} ${Buffer.from(KEYS.sessionToken).toString('base64url')}`,
  )
  assert.ok(logs.records().some((l) => l.event === 'canary_probe'))
  assertNoCanary(logs.lines(), [KEYS.secretAccessKey, KEYS.sessionToken])
})

async function viaRoute(method: string, p: string, headers: Record<string, string> = {}, body?: string | Buffer | Readable) {
  const r = await request(`${daemon.proxyUrl}/s3${p}`, { dispatcher: client, method: method as 'GET', headers, body })
  return { status: r.statusCode, body: await r.body.text(), code: r.headers['x-latchkey-error'] as string | undefined }
}

test('route: a PUT with UNSIGNED-PAYLOAD, a GET and a ListObjectsV2 from a client holding dummy keys are re-signed and accepted by the verifying store', async () => {
  const put = await viaRoute('PUT', '/bucket/route/a b+c.txt', { ...DUMMY, 'content-type': 'text/plain' }, 'hello from the route')
  assert.equal(put.status, 200, put.body)
  assert.equal(s3.log.at(-1)?.payloadHash, 'UNSIGNED-PAYLOAD')
  const got = await viaRoute('GET', '/bucket/route/a%20b%2Bc.txt', DUMMY)
  assert.equal(got.status, 200, got.body)
  assert.equal(got.body, 'hello from the route')
  const list = await viaRoute('GET', '/bucket?list-type=2&prefix=route%2F', {})
  assert.equal(list.status, 200, list.body)
  assert.match(list.body, /<Key>route\/a b\+c.txt<\/Key>/)
})

test('forward proxy (HTTP_PROXY): the request is signed for the host it names', async () => {
  const proxy = new ProxyAgent(daemon.proxyUrl)
  try {
    const put = await request(`${s3.url}/bucket/proxy/obj`, { dispatcher: proxy, method: 'PUT', headers: DUMMY, body: 'via proxy' })
    assert.equal(put.statusCode, 200, await put.body.text())
    const got = await request(`${s3.url}/bucket/proxy/obj`, { dispatcher: proxy, headers: DUMMY })
    assert.equal(got.statusCode, 200)
    assert.equal(await got.body.text(), 'via proxy')
  } finally {
    await proxy.close()
  }
})

test('intercepted tunnel (HTTPS_PROXY + interception): an https S3 request is signed inside the tunnel', async () => {
  const proxy = new ProxyAgent({ uri: daemon.proxyUrl, requestTls: { ca: latchkeyCa } })
  const base = `https://localhost:${new URL(s3tls.url).port}`
  try {
    const put = await request(`${base}/bucket/tunnel/obj`, { dispatcher: proxy, method: 'PUT', headers: DUMMY, body: 'via tunnel' })
    assert.equal(put.statusCode, 200, await put.body.text())
    const list = await request(`${base}/bucket?list-type=2`, { dispatcher: proxy })
    assert.equal(list.statusCode, 200)
    assert.match(await list.body.text(), /<Key>tunnel\/obj<\/Key>/)
  } finally {
    await proxy.close()
  }
})

test('overwrite: false: a request the client signed itself is sent as it is (the store judges its signature); one without Authorization is signed', async () => {
  const store = await startS3Server({ region: 'eu-central-1', keys: [KEYS] })
  const d = await startTestDaemon({
    baseDir: dir,
    logStream: logs.stream,
    config: {
      providers: { files: { type: 'file', dir: '.' } },
      credentials: { own: { provider: 'files', ref: 'keys.json', hosts: [store.host], insecure: true, inject: { type: 'aws-sigv4', overwrite: false, region: 'eu-central-1', service: 's3' } } },
      routes: { own: { upstream: store.url } },
    },
  })
  try {
    const start = logs.lines().length
    const kept = await request(`${d.proxyUrl}/own/bucket/key`, { dispatcher: client, headers: DUMMY })
    await kept.body.dump()
    assert.equal(kept.statusCode, 403, 'the dummy signature reached the store unchanged and was refused there')
    assert.equal(store.log.at(-1)?.status, 403)
    const record = logs.records().slice(start).find((l) => l.event === 'request')
    assert.equal(record?.outcome, 'client_header_kept')
    const signed = await request(`${d.proxyUrl}/own/bucket?list-type=2`, { dispatcher: client })
    await signed.body.dump()
    assert.equal(signed.statusCode, 200, 'a request without its own Authorization is signed')
    assert.equal(store.log.at(-1)?.status, 200)
  } finally {
    await d.close(100)
    await store.close()
  }
})

test('a service that needs the body hash (Secrets Manager) gets the body buffered and signed; a body over maxBodyBytes is 413 request_too_large and never sent', async () => {
  sm.setSecret('app', 'v1')
  const headers = { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'secretsmanager.GetSecretValue' }
  const r = await request(`${daemon.proxyUrl}/sm/`, { dispatcher: client, method: 'POST', headers, body: JSON.stringify({ SecretId: 'app' }) })
  const text = await r.body.text()
  assert.equal(r.statusCode, 200, text)
  assert.equal((JSON.parse(text) as { SecretString: string }).SecretString, 'v1')
  const big = await request(`${daemon.proxyUrl}/sm/`, { dispatcher: client, method: 'POST', headers, body: JSON.stringify({ SecretId: 'x'.repeat(5000) }) })
  await big.body.text()
  assert.equal(big.statusCode, 413)
  assert.equal(big.headers['x-latchkey-error'], 'request_too_large')
  // Streamed in chunks with no length: read up to the limit, then refused.
  const streamed = await request(`${daemon.proxyUrl}/sm/`, { dispatcher: client, method: 'POST', headers, body: Readable.from([Buffer.alloc(3000, 32), Buffer.alloc(3000, 32)]) })
  await streamed.body.text()
  assert.equal(streamed.statusCode, 413)
})

test('presigned query auth and aws-chunked signed bodies are refused with 400 sigv4_unsupported before anything reaches the store', async () => {
  const before = s3.log.length
  const presigned = await viaRoute('GET', '/bucket/route/x?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIADUMMY%2F20200101%2Feu-central-1%2Fs3%2Faws4_request&X-Amz-Signature=' + 'a'.repeat(64))
  assert.equal(presigned.status, 400)
  assert.equal(presigned.code, 'sigv4_unsupported')
  assert.match(presigned.body, /presigned/)
  const chunked = await viaRoute('PUT', '/bucket/route/chunked', { ...DUMMY, 'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD', 'x-amz-decoded-content-length': '5' }, '5;chunk-signature=00\r\nhello\r\n')
  assert.equal(chunked.status, 400)
  assert.equal(chunked.code, 'sigv4_unsupported')
  assert.match(chunked.body, /payload_signing_enabled/)
  assert.equal(s3.log.length, before)
})

test('rotated keys: the store refuses the old signature with 403, latchkey refetches the keys, signs again and replays once', async () => {
  await writeFile(path.join(dir, 'keys.json'), JSON.stringify(ROTATED))
  s3Keys.splice(0, s3Keys.length, ROTATED)
  try {
    const before = s3.log.length
    const r = await viaRoute('PUT', '/bucket/rotated', DUMMY, 'after rotation')
    assert.equal(r.status, 200, r.body)
    assert.deepEqual(s3.log.slice(before).map((e) => [e.status, e.code]), [[403, 'InvalidAccessKeyId'], [200, undefined]])
  } finally {
    await writeFile(path.join(dir, 'keys.json'), JSON.stringify(KEYS))
    s3Keys.splice(0, s3Keys.length, KEYS)
    daemon.cache.clear()
  }
})

test('a 200 MiB PUT streams through a latchkey daemon (a child process) unsigned-payload: the store gets every byte and the daemon\'s peak RSS stays far below the body size', async (t) => {
  if (process.platform !== 'linux') return t.skip('reads the peak RSS from /proc/<pid>/status')
  const file = path.join(dir, 'big.yaml')
  await writeFile(
    file,
    JSON.stringify({
      listen: '127.0.0.1:0',
      admin: { listen: '127.0.0.1:0' },
      log: { level: 'info' },
      providers: { files: { type: 'file', dir } },
      credentials: { s3: { provider: 'files', ref: 'keys.json', hosts: [s3.host], insecure: true, inject: { type: 'aws-sigv4', endpoints: { [s3.host]: { region: 'eu-central-1', service: 's3' } } } } },
      routes: { s3: { upstream: s3.url } },
    }),
  )
  const bin = await startBin(['run', '-c', file])
  try {
    const pid = bin.child.pid as number
    const memory = async () => {
      const status = await readFile(`/proc/${pid}/status`, 'utf8')
      const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) * 1024
      return { rss: kib('VmRSS'), peak: kib('VmHWM') }
    }
    // One small signed request first, so the peak below is the upload's, not the first request's code loading.
    const warm = await request(`${bin.proxyUrl}/s3/bucket/warm`, { dispatcher: client, method: 'PUT', body: 'warm' })
    assert.equal(warm.statusCode, 200, await warm.body.text())
    const before = await memory()
    const chunk = Buffer.alloc(1024 * 1024)
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31) & 0xff
    const n = 200
    const want = createHash('sha256')
    for (let i = 0; i < n; i++) want.update(chunk)
    const body = Readable.from((function* () {
      for (let i = 0; i < n; i++) yield chunk
    })())
    const r = await request(`${bin.proxyUrl}/s3/bucket/big.bin`, { dispatcher: client, method: 'PUT', headers: { ...DUMMY, 'content-length': String(n * chunk.length) }, body })
    assert.equal(r.statusCode, 200, await r.body.text())
    assert.deepEqual(s3.stored.get('bucket/big.bin'), { size: n * chunk.length, sha256: want.digest('hex') })
    const after = await memory()
    const grew = after.peak - before.rss
    t.diagnostic(`daemon rss before ${Math.round(before.rss / 1048576)} MiB, peak during the upload ${Math.round(after.peak / 1048576)} MiB`)
    // Streaming through Node leaves ~70 MiB of socket chunks for the GC to collect (V8 collects
    // external memory in steps of about 64 MiB): the same for 50, 200 or 400 MiB bodies, while a
    // daemon that buffered the body would grow by at least its 200 MiB.
    assert.ok(grew < 128 * 1024 * 1024, `the daemon's peak RSS grew by ${Math.round(grew / 1048576)} MiB during the upload`)
  } finally {
    bin.child.kill('SIGTERM')
    await exitedWithin(bin)
  }
})

test("the in-process shim signs the same way, and without provider and ref uses the sidecar's own identity (the default chain, here its environment source)", async () => {
  const shimLogs = captureLogs()
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY, token: process.env.AWS_SESSION_TOKEN }
  process.env.AWS_ACCESS_KEY_ID = CHAIN.accessKeyId
  process.env.AWS_SECRET_ACCESS_KEY = CHAIN.secretAccessKey
  process.env.AWS_SESSION_TOKEN = CHAIN.sessionToken
  s3Keys.push(CHAIN)
  const shim = createLatchkeyInterceptor(
    {
      log: { level: 'trace' },
      providers: {},
      credentials: { s3: { hosts: [s3.host], insecure: true, inject: { type: 'aws-sigv4', endpoints: { [s3.host]: { region: 'eu-central-1', service: 's3' } } } } },
    },
    { logStream: shimLogs.stream },
  )
  const base = new Agent()
  try {
    await shim.ready
    const dispatcher = base.compose(shim)
    const put = await request(`${s3.url}/bucket/shim/obj`, { dispatcher, method: 'PUT', headers: DUMMY, body: Buffer.from('from the shim') })
    assert.equal(put.statusCode, 200, await put.body.text())
    const got = await request(`${s3.url}/bucket/shim/obj`, { dispatcher })
    assert.equal(await got.body.text(), 'from the shim')
    assert.match(String(s3.log.at(-1)?.payloadHash), /^[0-9a-f]{64}$/)
    // The shim logs each request at trace: the keys from the chain are scrubbed like stored ones.
    shim.broker.logger.info({ event: 'probe', value: CHAIN.secretAccessKey, token: Buffer.from(CHAIN.sessionToken).toString('base64') }, 'probe')
  } finally {
    await shim.close()
    await base.close()
    s3Keys.pop()
    for (const [k, v] of [['AWS_ACCESS_KEY_ID', saved.id], ['AWS_SECRET_ACCESS_KEY', saved.secret], ['AWS_SESSION_TOKEN', saved.token]] as const) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
  assert.ok(shimLogs.records().some((l) => l.event === 'probe'))
  assertNoCanary(shimLogs.lines(), [CHAIN.secretAccessKey, CHAIN.sessionToken])
})

/** Each python3 that can import boto3: the one on PATH and Debian's (`apt-get install python3-boto3`), with its botocore version. */
function pythonsWithBoto3(): Array<{ python: string; botocore: string }> {
  const found: Array<{ python: string; botocore: string }> = []
  for (const python of ['python3', '/usr/bin/python3']) {
    const r = spawnSync(python, ['-c', 'import boto3, botocore; print(botocore.__version__)'], { env: baseEnv(), encoding: 'utf8', timeout: 20_000 })
    const botocore = r.stdout?.trim()
    if (!r.error && r.status === 0 && botocore && !found.some((f) => f.botocore === botocore)) found.push({ python, botocore })
  }
  return found
}

const BOTO3 = `
import io, json, sys
import boto3
from botocore.config import Config
endpoint, bucket = sys.argv[1], sys.argv[2]
# Dummy keys: latchkey holds the real ones.
s3 = boto3.client('s3', endpoint_url=endpoint, region_name='eu-central-1',
    aws_access_key_id='AKIADUMMYDUMMYDUMMY0', aws_secret_access_key='dummy-secret-key', aws_session_token='dummy-session-token',
    config=Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1}))
s3.put_object(Bucket=bucket, Key='boto/hello.txt', Body=b'hello from boto3', ContentType='text/plain')
s3.upload_fileobj(io.BytesIO(bytes(range(256)) * 12288), bucket, 'boto/blob.bin')
listed = s3.list_objects_v2(Bucket=bucket, Prefix='boto/')
body = s3.get_object(Bucket=bucket, Key='boto/hello.txt')['Body'].read().decode()
print(json.dumps({'keys': sorted(o['Key'] for o in listed.get('Contents', [])), 'body': body}))
`

const boto3 = pythonsWithBoto3()

test('boto3 with dummy keys through HTTPS_PROXY + interception uploads, lists and reads objects', boto3.length === 0 ? { skip: 'boto3 is not importable by python3 or /usr/bin/python3 (Debian: apt-get install -y python3-boto3)' } : {}, async (t) => {
  const caFile = path.join(dir, 'ca', 'ca.pem')
  const endpoint = `https://localhost:${new URL(s3tls.url).port}`
  // Older botocore sends UNSIGNED-PAYLOAD or a hex hash; 1.36 and later an aws-chunked body with a CRC32 trailer.
  for (const { python, botocore } of boto3) {
    await t.test(`botocore ${botocore} (${python})`, async () => {
      const bucket = `data-${botocore.replace(/\./g, '-')}`
      const before = s3tls.log.length
      const r = await run(python, ['-c', BOTO3, endpoint, bucket], {
        env: baseEnv({ HOME: dir, HTTPS_PROXY: daemon.proxyUrl, https_proxy: daemon.proxyUrl, AWS_CA_BUNDLE: caFile, AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null', AWS_EC2_METADATA_DISABLED: 'true' }),
        timeoutMs: 60_000,
      })
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(JSON.parse(r.stdout), { keys: ['boto/blob.bin', 'boto/hello.txt'], body: 'hello from boto3' })
      assert.equal(s3tls.stored.get(`${bucket}/boto/blob.bin`)?.size, 256 * 12288)
      // Every request boto3 made reached the store signed with the real keys, none refused.
      const seen = s3tls.log.slice(before)
      assert.ok(seen.length >= 4)
      assert.deepEqual(seen.filter((e) => e.status !== 200), [])
      t.diagnostic(`botocore ${botocore} payload hashes: ${[...new Set(seen.map((e) => e.payloadHash))].join(', ')}`)
    })
  }
})

const BOTO3_NO_KEYS = `
import json, os, sys
import boto3
from botocore.config import Config
endpoint, bucket = sys.argv[1], sys.argv[2]
# No keys in the script: what latchkey exec left in the environment.
s3 = boto3.client('s3', endpoint_url=endpoint, region_name='eu-central-1',
    config=Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1}))
s3.put_object(Bucket=bucket, Key='exec/hello.txt', Body=b'hello from exec')
body = s3.get_object(Bucket=bucket, Key='exec/hello.txt')['Body'].read().decode()
aws = {k: v for k, v in os.environ.items() if k.startswith('AWS_') and k not in ('AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE', 'AWS_EC2_METADATA_DISABLED')}
print(json.dumps({'body': body, 'aws': aws}))
`

test("latchkey exec -- python (boto3, no keys of its own): signed with latchkey's identity, and the command never holds the real keys", boto3.length === 0 ? { skip: 'boto3 is not importable by python3 or /usr/bin/python3 (Debian: apt-get install -y python3-boto3)' } : {}, async () => {
  const { python } = boto3[0]!
  const port = new URL(s3tls.url).port
  s3Keys.push(CHAIN)
  const config = path.join(dir, 'exec.yaml')
  await writeFile(
    config,
    ['upstream: { caFile: upstream-ca.pem }', 'credentials:', `  lake: { hosts: ["localhost:${port}"], inject: { type: aws-sigv4, region: eu-central-1, service: s3 } }`, ''].join('\n'),
  )
  const before = s3tls.log.length
  const r = await run(process.execPath, [BIN, 'exec', '-c', config, '--', python, '-c', BOTO3_NO_KEYS, `https://localhost:${port}`, 'exec-bucket'], {
    // latchkey's own identity, as IRSA or a developer's shell would give it: the default chain's environment source.
    env: baseEnv({ HOME: dir, AWS_ACCESS_KEY_ID: CHAIN.accessKeyId, AWS_SECRET_ACCESS_KEY: CHAIN.secretAccessKey, AWS_SESSION_TOKEN: CHAIN.sessionToken, AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null', AWS_EC2_METADATA_DISABLED: 'true' }),
    cwd: dir,
    timeoutMs: 60_000,
  })
  assert.equal(r.code, 0, r.stderr)
  const out = JSON.parse(r.stdout) as { body: string; aws: Record<string, string> }
  assert.equal(out.body, 'hello from exec')
  assert.deepEqual(out.aws, { AWS_ACCESS_KEY_ID: 'latchkey-placeholder', AWS_SECRET_ACCESS_KEY: 'latchkey-placeholder' })
  const seen = s3tls.log.slice(before)
  assert.equal(seen.length, 2)
  assert.deepEqual(seen.filter((e) => e.status !== 200), [])
  assertNoCanary([r.stdout, r.stderr], [CHAIN.secretAccessKey, CHAIN.sessionToken])
})
