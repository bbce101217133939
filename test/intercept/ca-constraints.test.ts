import 'reflect-metadata'
import assert from 'node:assert/strict'
import { execFile, spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import tls from 'node:tls'
import { promisify } from 'node:util'
import * as x509 from '@peculiar/x509'
import { caScopeFor, loadOrCreateCa } from '../../src/intercept/ca-store.ts'
import { CertificateAuthority, type CaScope } from '../../src/intercept/certificate-authority.ts'
import { parseHostPattern, type HostPattern } from '../../src/binding/host-pattern.ts'

const run = promisify(execFile)
let dir: string
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'latchkey-ca-nc-'))
})
after(async () => {
  await rm(dir, { recursive: true, force: true })
})

const DAY = 86_400_000
const patterns = (...hosts: string[]): HostPattern[] => hosts.map((h) => {
  const r = parseHostPattern(h)
  assert.ok(r.ok, h)
  return r.pattern
})
const SCOPE: CaScope = caScopeFor([{ patterns: patterns('api.lk.test:8443', '*.wild.lk.test', '127.0.0.1:*', '[::1]') }])

describe('caScopeFor', () => {
  it('turns exact hosts into DNS names, wildcards into leading-dot subtrees and IP literals into addresses, sorted and without ports', () => {
    assert.deepEqual(SCOPE, { dns: ['.wild.lk.test', 'api.lk.test'], ip: ['127.0.0.1', '::1'] })
    assert.deepEqual(caScopeFor([{ patterns: patterns('B.example.com', 'b.example.com:8443') }, { patterns: patterns('a.example.com') }]), { dns: ['a.example.com', 'b.example.com'], ip: [] })
  })
})

describe('the interception CA in caDir', () => {
  it('carries critical name constraints for exactly the bound hosts, and keeps them across restarts with the same hosts', async () => {
    const caDir = path.join(dir, 'same')
    const first = await loadOrCreateCa({ caDir, leafTtlMs: DAY, scope: SCOPE })
    assert.deepEqual(first.ca.scope, SCOPE)
    assert.equal(new x509.X509Certificate(first.ca.certPem).getExtension('2.5.29.30')?.critical, true, 'name constraints are critical (RFC 5280)')
    const again = await loadOrCreateCa({ caDir, leafTtlMs: DAY, scope: { dns: [...SCOPE.dns].reverse(), ip: SCOPE.ip } })
    assert.equal(again.created, false)
    assert.equal(again.rotated, false)
    assert.equal(again.ca.certPem, first.ca.certPem)
  })

  it('is replaced by a new CA when the bound hosts change, and the certificate and bundle files then hold only the new one', async () => {
    const caDir = path.join(dir, 'rotate')
    const publicCaFile = path.join(dir, 'rotate-public', 'latchkey-ca.pem')
    const old = await loadOrCreateCa({ caDir, publicCaFile, leafTtlMs: DAY, scope: SCOPE })
    const oldKey = await readFile(old.files.keyFile, 'utf8')
    const scope = { dns: [...SCOPE.dns, 'new.lk.test'], ip: SCOPE.ip }
    const next = await loadOrCreateCa({ caDir, publicCaFile, leafTtlMs: DAY, scope })
    assert.equal(next.rotated, true)
    assert.equal(next.created, true)
    assert.deepEqual(next.ca.scope, { dns: ['.wild.lk.test', 'api.lk.test', 'new.lk.test'], ip: SCOPE.ip })
    assert.notEqual(await readFile(next.files.keyFile, 'utf8'), oldKey)
    for (const f of [next.files.certFile, next.publicFiles?.certFile]) assert.equal(await readFile(f as string, 'utf8'), next.ca.certPem)
    for (const f of [next.files.bundleFile, next.publicFiles?.bundleFile]) {
      const bundle = await readFile(f as string, 'utf8')
      assert.ok(bundle.endsWith(next.ca.certPem))
      assert.ok(!bundle.includes(old.ca.certPem.trim()), 'the old CA is no longer trusted through the bundle')
    }
    assert.ok(next.warnings.some((w) => /a new interception CA constrained to them replaced the one .* must restart/.test(w)))
  })

  it('replaces a CA latchkey made before CAs were constrained', async () => {
    const caDir = path.join(dir, 'legacy')
    const legacy = await CertificateAuthority.create({ commonName: 'latchkey interception CA' })
    await rm(caDir, { recursive: true, force: true })
    await loadOrCreateCa({ caDir, leafTtlMs: DAY, scope: SCOPE }) // makes the directory with the right modes
    await writeFile(path.join(caDir, 'ca-key.pem'), legacy.keyPem + legacy.certPem, { mode: 0o600 })
    const r = await loadOrCreateCa({ caDir, leafTtlMs: DAY, scope: SCOPE })
    assert.equal(r.rotated, true)
    assert.notEqual(r.ca.certPem, legacy.certPem)
    assert.deepEqual(r.ca.scope, SCOPE)
  })
})

// OpenSSL-based clients decide by themselves: a leaf the CA's key mints for a name outside the
// constraints is refused in the client's own verification, whatever latchkey does.
const haveCurl = spawnSync('curl', ['--version']).status === 0
const havePython = spawnSync('python3', ['-c', 'import ssl']).status === 0

describe('clients that trust the constrained CA', () => {
  let ca: CertificateAuthority
  let caFile: string
  let server: tls.Server
  let port: number
  let unboundIpServer: tls.Server
  let unboundIpPort: number
  const contexts = new Map<string, tls.SecureContext>()

  before(async () => {
    ca = await CertificateAuthority.create({ scope: SCOPE })
    caFile = path.join(dir, 'client-ca.pem')
    await writeFile(caFile, ca.certPem)
    // One leaf per name, each minted with the CA's key, chosen by SNI (IP literals send none: the IP leaf).
    for (const name of ['api.lk.test', 'x.wild.lk.test', 'wild.lk.test', 'evil.example.org', 'api.lk.test.evil.example.org']) {
      const leaf = await ca.issue([name])
      contexts.set(name, tls.createSecureContext({ cert: leaf.cert, key: leaf.key }))
    }
    const ipLeaf = await ca.issue(['127.0.0.1'])
    server = tls.createServer({ SNICallback: (name, cb) => cb(null, contexts.get(name)), cert: ipLeaf.cert, key: ipLeaf.key }, (s) => {
      s.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok')
    })
    server.on('tlsClientError', () => undefined)
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    port = (server.address() as AddressInfo).port
    const unboundIpLeaf = await ca.issue(['127.0.0.2'])
    unboundIpServer = tls.createServer({ cert: unboundIpLeaf.cert, key: unboundIpLeaf.key }, (s) => s.end())
    unboundIpServer.on('tlsClientError', () => undefined)
    await new Promise<void>((r) => unboundIpServer.listen(0, '127.0.0.1', r))
    unboundIpPort = (unboundIpServer.address() as AddressInfo).port
  })
  after(() => {
    server?.close()
    unboundIpServer?.close()
  })

  const curl = (name: string) =>
    run('curl', ['-sS', '--max-time', '20', '--cacert', caFile, '--resolve', `${name}:${port}:127.0.0.1`, `https://${name}:${port}/`]).then(
      (r) => ({ ok: true, out: r.stdout }),
      (e: { stderr?: string }) => ({ ok: false, out: e.stderr ?? '' }),
    )

  it('curl accepts a leaf for a bound name and for a name under a bound wildcard', { skip: !haveCurl && 'curl is not installed' }, async () => {
    for (const name of ['api.lk.test', 'x.wild.lk.test']) {
      const r = await curl(name)
      assert.equal(r.ok, true, `${name}: ${r.out}`)
      assert.equal(r.out, 'ok')
    }
  })

  it('curl refuses a leaf for an unbound name, the wildcard apex, and a bound name used as a prefix (permitted subtree violation)', { skip: !haveCurl && 'curl is not installed' }, async () => {
    for (const name of ['evil.example.org', 'wild.lk.test', 'api.lk.test.evil.example.org']) {
      const r = await curl(name)
      assert.equal(r.ok, false, name)
      assert.match(r.out, /permitted subtree violation/, name)
    }
  })

  const python = (serverHostname: string, to = port) =>
    run('python3', [
      '-c',
      [
        'import socket, ssl, sys',
        'ctx = ssl.create_default_context(cafile=sys.argv[1])',
        'sock = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=20)',
        'try:',
        '    tls = ctx.wrap_socket(sock, server_hostname=sys.argv[3])',
        '    print("accepted", tls.recv(100).decode().split("\\r\\n")[0])',
        'except ssl.SSLCertVerificationError as e:',
        '    print("refused", e.verify_message)',
      ].join('\n'),
      caFile,
      String(to),
      serverHostname,
    ]).then((r) => r.stdout.trim())

  it('python ssl accepts a bound name and a bound IP literal, and refuses an unbound name and an unbound IP literal', { skip: !havePython && 'python3 is not installed' }, async () => {
    assert.equal(await python('api.lk.test'), 'accepted HTTP/1.1 200 OK')
    assert.equal(await python('127.0.0.1'), 'accepted HTTP/1.1 200 OK')
    assert.equal(await python('evil.example.org'), 'refused permitted subtree violation')
    // A leaf for 127.0.0.2, whose SAN matches the name the client asked for: only the CA's IP constraint refuses it.
    assert.equal(await python('127.0.0.2', unboundIpPort), 'refused permitted subtree violation')
  })
})
