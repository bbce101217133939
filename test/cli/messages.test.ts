/**
 * One test per message a newcomer meets first: each names what failed, where, and the fix.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, test } from 'node:test'
import { z } from 'zod'
import { needsSdk } from '../../src/providers/registry.ts'
import type { ProviderFactory } from '../../src/providers/provider.ts'
import { ROOT, exitedWithin, runBin, startBin } from '../helpers/child.ts'
import { rawRequest } from '../helpers/raw-http.ts'

const dir = mkdtempSync(path.join(tmpdir(), 'latchkey-messages-'))
after(() => rmSync(dir, { recursive: true, force: true }))
let n = 0
function configFile(text: string): string {
  const file = path.join(dir, `c${n++}.yaml`)
  writeFileSync(file, text)
  return file
}
const ENV_CONFIG = ['listen: 127.0.0.1:0', 'admin: { listen: 127.0.0.1:0 }', 'providers: { dev: { type: env } }', 'credentials:', '  api: { provider: dev, ref: MSG_TOKEN, hosts: [api.example.com], inject: { type: bearer } }', ''].join('\n')

test('--version prints the version like the version command', async () => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }
  for (const args of [['--version'], ['version']]) {
    const r = await runBin(args)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, `latchkey ${pkg.version}\n`)
  }
})

test('run --log-level overrides log.level, and an unknown level is refused with the choices (exit 2)', async () => {
  const bin = await startBin(['run', '-c', configFile(ENV_CONFIG), '--log-level', 'debug'], { env: { MSG_TOKEN: 'msg-token-value-1234' } })
  try {
    await new Promise<void>((resolve) => {
      const wait = () => (bin.output().includes('"event":"secret_fetched"') ? resolve() : setTimeout(wait, 20))
      wait()
    })
  } finally {
    bin.child.kill('SIGTERM')
    await exitedWithin(bin)
  }
  assert.match(bin.output(), /"level":20,.*"event":"secret_fetched"/, 'a debug line')
  const r = await runBin(['run', '-c', configFile(ENV_CONFIG), '--log-level', 'loud'])
  assert.equal(r.code, 2)
  assert.match(r.stderr, /Allowed choices are trace, debug, info, warn, error, silent/)
})

test('an unknown key gets a "did you mean" at its path', async () => {
  const r = await runBin(['check', '-c', configFile(`${ENV_CONFIG}cache: { tll: 5m }\n`)])
  assert.equal(r.code, 2)
  assert.match(r.stderr, /^ {2}- cache: unknown key "tll" \(did you mean "ttl"\?\)$/m)
})

test('a ${env:X} unquoted in a flow map gives the first YAML error and the quoting hint, not a cascade', async () => {
  const r = await runBin(['check', '-c', configFile('providers:\n  v: { type: vault, address: ${env:VAULT_ADDR} }\n')])
  assert.equal(r.code, 2)
  assert.match(r.stderr, /invalid configuration \(1 problem\)/)
  assert.match(r.stderr, /YAML: .* at line 2, column \d+: — a \$\{env:…\} or \$\{file:…\} inside a \{ … \} flow map must be quoted: key: "\$\{env:NAME\}" \(\d+ more errors? follow from it\)/)
})

test('an invalid config exits 2 for run, check and doctor alike', async () => {
  const bad = configFile('credentials: 3\n')
  for (const cmd of ['run', 'check', 'doctor']) {
    const r = await runBin([cmd, '-c', bad])
    assert.equal(r.code, 2, `${cmd}: ${r.stderr}`)
    assert.match(r.stderr, /invalid configuration/)
  }
})

test('an address in use names the listener and the flag or key that moves it', async () => {
  const taken = net.createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  const port = (taken.address() as net.AddressInfo).port
  try {
    const proxy = await runBin(['run', '-c', configFile(ENV_CONFIG), '--listen', `127.0.0.1:${port}`], { env: { MSG_TOKEN: 'x-token-value-1234' } })
    assert.equal(proxy.code, 1)
    assert.match(proxy.stderr, new RegExp(`cannot start: proxy listener 127\\.0\\.0\\.1:${port}: address already in use; .* --listen / listen`))
    const admin = await runBin(['run', '-c', configFile(ENV_CONFIG), '--admin-listen', `127.0.0.1:${port}`], { env: { MSG_TOKEN: 'x-token-value-1234' } })
    assert.equal(admin.code, 1)
    assert.match(admin.stderr, new RegExp(`cannot start: admin listener 127\\.0\\.0\\.1:${port}: address already in use; .* --admin-listen / admin\\.listen`))
  } finally {
    await new Promise((r) => taken.close(r))
  }
})

test('an expected provider failure is one line without a stack trace below debug, and Vault names the address it tried', async () => {
  const closed = net.createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const port = (closed.address() as net.AddressInfo).port
  await new Promise((r) => closed.close(r)) // nothing listens there now: Vault is down
  const config = configFile(
    [
      'listen: 127.0.0.1:0',
      'admin: { listen: 127.0.0.1:0 }',
      'cache: { fetchAttempts: 1 }',
      `providers: { dev: { type: env }, vault: { type: vault, address: "http://127.0.0.1:${port}", auth: { method: token, token: msg-vault-token-0001 } } }`,
      'credentials:',
      '  unset: { provider: dev, ref: MSG_UNSET_VARIABLE, hosts: [a.example.com], inject: { type: bearer } }',
      '  kv: { provider: vault, ref: secret/data/app, field: token, hosts: [b.example.com], inject: { type: bearer } }',
      '',
    ].join('\n'),
  )
  const bin = await startBin(['run', '-c', config])
  try {
    await new Promise<void>((resolve) => {
      const wait = () => (bin.output().includes('"event":"prefetch_incomplete"') ? resolve() : setTimeout(wait, 20))
      wait()
    })
  } finally {
    bin.child.kill('SIGTERM')
    await exitedWithin(bin)
  }
  const errors = bin
    .output()
    .split('\n')
    .filter((l) => l.includes('"event":"provider_error"'))
    .map((l) => JSON.parse(l) as { level: number; credential: string; err: { message: string; stack?: string; cause?: { stack?: string } } })
  assert.deepEqual(errors.map((e) => e.credential).sort(), ['kv', 'unset'])
  for (const e of errors) {
    assert.equal(e.level, 40)
    assert.equal(e.err.stack, undefined, `${e.credential}: no stack below debug`)
    assert.equal(e.err.cause?.stack, undefined)
  }
  assert.match(errors.find((e) => e.credential === 'kv')?.err.message ?? '', new RegExp(`at http://127\\.0\\.0\\.1:${port}: .*cannot reach Vault`))
})

test('a refused CONNECT carries its code and fix in the status line and a Proxy-Status header, and is logged at WARN', async () => {
  const bin = await startBin(['run', '-c', configFile(ENV_CONFIG)], { env: { MSG_TOKEN: 'x-token-value-1234' } })
  let raw: string
  try {
    raw = await rawRequest(bin.proxyUrl, 'CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n')
    await new Promise<void>((resolve) => {
      const wait = () => (bin.output().includes('"code":"intercept_disabled"') ? resolve() : setTimeout(wait, 20))
      wait()
    })
  } finally {
    bin.child.kill('SIGTERM')
    await exitedWithin(bin)
  }
  const [statusLine = '', ...headers] = raw.split('\r\n\r\n')[0]?.split('\r\n') ?? []
  assert.match(statusLine, /^HTTP\/1\.1 403 intercept_disabled: a credential \(api\) is bound to api\.example\.com:443; .*Enable intercept\.enabled/)
  const proxyStatus = headers.find((h) => h.toLowerCase().startsWith('proxy-status:'))
  assert.match(proxyStatus ?? '', /^proxy-status: latchkey; error=http_request_denied; details="intercept_disabled: a credential \(api\) is bound to api\.example\.com:443; .*"$/i)
  const logged = bin.output().split('\n').find((l) => l.includes('"code":"intercept_disabled"'))
  assert.match(logged ?? '', /"level":40,.*Enable intercept\.enabled/)
})

test('a provider whose SDK is not installed fails with the package to install', async () => {
  const factory: ProviderFactory = {
    type: 'fake',
    optionsSchema: z.object({ type: z.literal('fake') }),
    async create() {
      // A real import of a package that is not installed: what a library user without the SDK gets.
      await import('latchkey-no-such-sdk-package' as string)
      throw new Error('unreachable')
    },
  }
  const wrapped = needsSdk(factory, ['latchkey-no-such-sdk-package'])
  await assert.rejects(wrapped.create({ type: 'fake' }, { name: 'cloud' } as never), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'provider_config')
    assert.equal(err.message, 'provider "cloud" (type fake) needs the package latchkey-no-such-sdk-package, which is not installed: npm install latchkey-no-such-sdk-package')
    return true
  })
  const other = needsSdk<ProviderFactory>({ ...factory, create: () => Promise.reject(new Error('boom')) }, ['x'])
  await assert.rejects(other.create({ type: 'fake' }, { name: 'cloud' } as never), /boom/, 'other errors pass through')
})

