import assert from 'node:assert/strict'
import { promises as dnsPromises } from 'node:dns'
import dgram from 'node:dgram'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import dnsPacket from 'dns-packet'
import { DnsLookup, DnsLookupError, parseHostsFile, parseResolvConf } from '../../src/proxy/dns-lookup.ts'
import { createUpstreamAgents } from '../../src/proxy/upstream.ts'
import { mapUpstreamError } from '../../src/http/upstream-error.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { ProxyAgent, request } from 'undici'

/**
 * A DNS server on 127.0.0.1 speaking the real wire format (dns-packet): `nx*` names never get
 * an answer, `gone.*` names get NXDOMAIN, `meta.*` resolves to the metadata address, every
 * other name to 127.0.0.1 (A) and nothing (AAAA). It counts the questions per name.
 */
async function startDnsServer(): Promise<{ address: string; asked: Map<string, number>; close(): Promise<void> }> {
  const socket = dgram.createSocket('udp4')
  const asked = new Map<string, number>()
  socket.on('message', (msg, rinfo) => {
    const query = dnsPacket.decode(msg)
    const q = query.questions?.[0]
    if (!q) return
    asked.set(`${q.name}/${q.type}`, (asked.get(`${q.name}/${q.type}`) ?? 0) + 1)
    if (q.name.startsWith('nx')) return // a name whose servers never answer
    const gone = q.name === 'gone' || q.name.startsWith('gone.')
    const answers: dnsPacket.Answer[] = []
    if (!gone && q.type === 'A') answers.push({ type: 'A', name: q.name, ttl: 60, data: q.name.startsWith('meta.') ? '169.254.169.254' : '127.0.0.1' })
    const reply = dnsPacket.encode({ type: 'response', id: query.id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (gone ? 3 : 0), questions: [q], answers })
    socket.send(reply, rinfo.port, rinfo.address)
  })
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  return {
    address: `127.0.0.1:${(socket.address() as AddressInfo).port}`,
    asked,
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  }
}

describe('DNS lookups for upstream connections', () => {
  let dns: Awaited<ReturnType<typeof startDnsServer>>
  let upstream: Upstream
  let dir: string
  let hostsFile: string
  const resolvers: dnsPromises.Resolver[] = []

  const resolverFor = (): dnsPromises.Resolver => {
    // One long try: a hung name stays pending for the whole test; cancel() ends it at teardown.
    const r = new dnsPromises.Resolver({ timeout: 30_000, tries: 1 })
    r.setServers([dns.address])
    resolvers.push(r)
    return r
  }

  before(async () => {
    dns = await startDnsServer()
    upstream = await startUpstream()
    dir = mkdtempSync(path.join(tmpdir(), 'latchkey-dns-'))
    hostsFile = path.join(dir, 'hosts')
    writeFileSync(hostsFile, '# test hosts\n127.0.0.1\tapi.lk.test  Alias.LK.test. # comment\n::1 v6only.lk.test\n')
  })

  after(async () => {
    for (const r of resolvers) r.cancel()
    await upstream.close()
    await dns.close()
    rmSync(dir, { recursive: true, force: true })
  })

  test('a bound name is served while 64 requests to names that never resolve are pending', async (t) => {
    const lookup = new DnsLookup({ resolver: resolverFor(), hostsFile, resolvConf: false, maxInFlightPerParent: 128 })
    const agents = createUpstreamAgents({ ca: undefined, connectTimeoutMs: 30_000, requestTimeoutMs: 30_000, allowLinkLocal: false, lookup: lookup.lookup })
    const settled: string[] = []
    const hung = Array.from({ length: 64 }, (_, i) =>
      agents.passthrough.request({ origin: `http://nx${i}.wild.lk.test:${upstream.port}`, path: '/', method: 'GET' }).then(
        () => settled.push(`nx${i} ok`),
        () => settled.push(`nx${i} failed`),
      ),
    )
    // Every hung name has its query out before the bound names are asked for.
    while (dns.asked.size < 64) await new Promise((r) => setTimeout(r, 5))
    assert.equal(lookup.inFlight, 64)
    const started = performance.now()
    const fromHosts = await agents.credentialed.request({ origin: `http://api.lk.test:${upstream.port}`, path: '/hosts', method: 'GET' })
    assert.equal(fromHosts.statusCode, 200)
    await fromHosts.body.dump()
    const fromDns = await agents.credentialed.request({ origin: `http://fast.lk.test:${upstream.port}`, path: '/dns', method: 'GET' })
    assert.equal(fromDns.statusCode, 200)
    await fromDns.body.dump()
    const ms = performance.now() - started
    // The order is the assertion; the wall-clock bound is generous (the issue measured 9.95 s).
    assert.deepEqual(settled, [], 'no hung lookup finished before the bound names were served')
    t.diagnostic(`a hosts-file name and a DNS name served in ${ms.toFixed(1)} ms with 64 lookups hung`)
    assert.ok(ms < 2_000, `bound names took ${ms.toFixed(0)} ms`)
    await Promise.all([agents.credentialed.destroy(), agents.passthrough.destroy()])
    await Promise.all(hung)
    assert.equal(settled.length, 64)
  })

  test('through the proxy listener, as the issue reproduced it: 64 requests to unresolvable names under a bound wildcard, and the bound api name is served meanwhile', async (t) => {
    const resolver = resolverFor()
    const lookup = new DnsLookup({ resolver, hostsFile, resolvConf: false, maxInFlightPerParent: 128 })
    const daemon = await startTestDaemon({
      env: { WILD: 'dns-wild-value', API: 'dns-api-value' },
      lookup: lookup.lookup,
      config: {
        log: { level: 'warn' },
        upstream: { connectTimeout: '30s', requestTimeout: '30s' },
        providers: { dev: { type: 'env' } },
        credentials: {
          wild: { provider: 'dev', ref: 'WILD', hosts: [`*.wild.lk.test:${upstream.port}`], insecure: true, inject: { type: 'bearer' } },
          api: { provider: 'dev', ref: 'API', hosts: [`api.lk.test:${upstream.port}`], insecure: true, inject: { type: 'bearer' } },
        },
      },
    })
    const proxy = new ProxyAgent({ uri: daemon.proxyUrl, connections: 80 })
    try {
      const settled: string[] = []
      const hung = Array.from({ length: 64 }, (_, i) =>
        request(`http://nx${i}.wild.lk.test:${upstream.port}/`, { dispatcher: proxy }).then(
          async (r) => {
            await r.body.dump()
            settled.push(`nx${i} ${r.statusCode}`)
          },
          () => settled.push(`nx${i} failed`),
        ),
      )
      // Every hung name has its query out before the bound name is asked for.
      while (lookup.inFlight < 64) await new Promise((r) => setTimeout(r, 5))
      const started = performance.now()
      const r = await request(`http://api.lk.test:${upstream.port}/bound`, { dispatcher: proxy })
      await r.body.dump()
      const ms = performance.now() - started
      assert.equal(r.statusCode, 200)
      assert.equal(upstream.received.at(-1)?.headers.authorization, 'Bearer dns-api-value')
      assert.deepEqual(settled, [], 'no hung request finished before the bound one was served')
      t.diagnostic(`the bound name was served through the listener in ${ms.toFixed(1)} ms with 64 lookups hung (the issue: 9.95 s)`)
      assert.ok(ms < 2_000, `the bound name took ${ms.toFixed(0)} ms`)
      resolver.cancel()
      await Promise.all(hung)
      assert.equal(settled.length, 64)
      assert.ok(settled.every((x) => / 502$/.test(x)), `the hung names end as 502 upstream_unreachable: ${settled.slice(0, 3).join(', ')}`)
    } finally {
      await proxy.close()
      await daemon.close(100)
    }
  })

  test('concurrent lookups of one name share one query, and a missing name is cached briefly', async () => {
    const lookup = new DnsLookup({ resolver: resolverFor(), hostsFile: false, resolvConf: false })
    const answers = await Promise.all(Array.from({ length: 20 }, () => lookup.resolve('shared.lk.test')))
    for (const a of answers) assert.deepEqual(a, [{ address: '127.0.0.1', family: 4 }])
    assert.equal(dns.asked.get('shared.lk.test/A'), 1)
    await lookup.resolve('shared.lk.test')
    assert.equal(dns.asked.get('shared.lk.test/A'), 1, 'the answer is cached for its TTL')

    const first = await lookup.resolve('gone.lk.test')
    assert.ok(first instanceof DnsLookupError)
    assert.equal(first.code, 'ENOTFOUND')
    await lookup.resolve('gone.lk.test')
    assert.equal(dns.asked.get('gone.lk.test/A'), 1, 'the failure is cached (negative cache)')
  })

  test('names under one parent beyond the cap fail at once; other names still resolve', async () => {
    const lookup = new DnsLookup({ resolver: resolverFor(), hostsFile: false, maxInFlightPerParent: 4, resolvConf: false })
    const pending = Array.from({ length: 4 }, (_, i) => lookup.resolve(`nx${i}.capped.lk.test`))
    const refused = await lookup.resolve('nx9.capped.lk.test')
    assert.ok(refused instanceof DnsLookupError)
    assert.equal(refused.code, 'EAI_AGAIN')
    assert.equal(mapUpstreamError(refused, 'nx9.capped.lk.test').code, 'upstream_unreachable')
    assert.deepEqual(await lookup.resolve('other.lk.test'), [{ address: '127.0.0.1', family: 4 }])
    assert.equal(lookup.inFlight, 4)
    void pending
  })

  test('a name that resolves to a link-local address is refused on the passthrough agent', async () => {
    const lookup = new DnsLookup({ resolver: resolverFor(), hostsFile: false, resolvConf: false })
    const agents = createUpstreamAgents({ ca: undefined, connectTimeoutMs: 5_000, requestTimeoutMs: 5_000, allowLinkLocal: false, lookup: lookup.lookup })
    const err = await agents.passthrough.request({ origin: 'http://meta.lk.test', path: '/latest/meta-data/', method: 'GET' }).then(
      () => assert.fail('must be refused'),
      (e: unknown) => e,
    )
    assert.equal(mapUpstreamError(err, 'meta.lk.test').code, 'link_local_denied')
    await Promise.all([agents.credentialed.destroy(), agents.passthrough.destroy()])
  })

  test('IP literals, localhost and hosts-file names never reach DNS', async () => {
    const lookup = new DnsLookup({ resolver: resolverFor(), hostsFile, resolvConf: false })
    const before = dns.asked.size
    assert.deepEqual(await lookup.resolve('127.0.0.7'), [{ address: '127.0.0.7', family: 4 }])
    assert.deepEqual(await lookup.resolve('::1'), [{ address: '::1', family: 6 }])
    assert.deepEqual(await lookup.resolve('localhost'), [{ address: '127.0.0.1', family: 4 }, { address: '::1', family: 6 }])
    assert.deepEqual(await lookup.resolve('ALIAS.lk.test.'), [{ address: '127.0.0.1', family: 4 }])
    const v4only = await new Promise<unknown>((resolve) => lookup.lookup('v6only.lk.test', { family: 4 }, (err) => resolve(err)))
    assert.equal((v4only as DnsLookupError).code, 'ENOTFOUND')
    assert.equal(dns.asked.size, before)
  })

  test('short names try the search domains first, as getaddrinfo does; names with enough dots are asked as they are first', async () => {
    const resolvConf = path.join(dir, 'resolv.conf')
    writeFileSync(resolvConf, 'nameserver 127.0.0.1\nsearch ns.lk.test corp.lk.test\noptions ndots:2 timeout:1\n')
    const lookup = new DnsLookup({ resolver: resolverFor(), hostsFile: false, resolvConf })
    assert.deepEqual(await lookup.resolve('svc'), [{ address: '127.0.0.1', family: 4 }])
    assert.equal(dns.asked.get('svc.ns.lk.test/A'), 1)
    assert.equal(dns.asked.get('svc/A'), undefined, 'the first search domain answered')
    await lookup.resolve('wide.lk.test')
    assert.equal(dns.asked.get('wide.lk.test/A'), 1)
    assert.equal(dns.asked.get('wide.lk.test.ns.lk.test/A'), undefined, 'a name with ndots dots is asked as it is first')
    const gone = await lookup.resolve('gone')
    assert.ok(gone instanceof DnsLookupError)
    assert.equal(gone.code, 'ENOTFOUND')
    for (const q of ['gone.ns.lk.test', 'gone.corp.lk.test', 'gone']) assert.equal(dns.asked.get(`${q}/A`), 1, q)
    assert.deepEqual(parseResolvConf('domain a.test\nsearch b.test c.test # k8s\noptions ndots:5 attempts:2'), { search: ['b.test', 'c.test'], ndots: 5 })
  })

  test('the hosts file parser keeps every name of a line and skips comments and junk', () => {
    const hosts = parseHostsFile('10.0.0.1 a.test b.test\n# 10.0.0.2 c.test\nnot-an-ip d.test\nfe80::1%eth0 e.test\n\n10.0.0.3 A.TEST\n')
    assert.deepEqual(hosts.get('a.test'), [{ address: '10.0.0.1', family: 4 }, { address: '10.0.0.3', family: 4 }])
    assert.deepEqual(hosts.get('b.test'), [{ address: '10.0.0.1', family: 4 }])
    assert.equal(hosts.get('c.test'), undefined)
    assert.equal(hosts.get('d.test'), undefined)
    assert.deepEqual(hosts.get('e.test'), [{ address: 'fe80::1%eth0', family: 6 }])
  })
})
