import type { IncomingMessage } from 'node:http'
import { Writable } from 'node:stream'
import type { CompiledCredential, Config } from '../config/load.ts'
import { createBroker } from '../broker.ts'
import { normalizeHost } from '../binding/host-pattern.ts'
import { ERROR_CODES, ProviderError } from '../errors.ts'
import { isRefusal, rawPathOf, TargetResolver, type Resolution } from '../proxy/resolve-target.ts'
import { normalizeRequestPath } from '../policy/request-path.ts'
import { decide } from '../policy/rules.ts'
import { fetchWithRetry } from '../cache/fetch-with-retry.ts'
import type { CliIo } from './io.ts'

/**
 * `latchkey doctor`: per provider, reachable and authenticated (and as whom); per
 * credential, fetchable — shown by fingerprint only; with `--dry-run [METHOD] URL`, which
 * credential would be injected (and which allow rule lets the request through), or why none. Returns the exit code (0 ok, 1 a problem).
 */
export async function doctor(config: Config, io: CliIo, dryRun: { url: string; method: string } | undefined): Promise<number> {
  const out = (s: string) => io.stdout.write(s + '\n')
  let problems = 0
  if (dryRun !== undefined) return explain(config, dryRun.url, dryRun.method, out)
  const broker = createBroker({ config, env: io.env, logStream: devNull(), processMetrics: false })
  out('providers:')
  for (const name of Object.keys(config.providers)) {
    try {
      const p = await broker.providers.get(name)
      const c = p.check ? await p.check(AbortSignal.timeout(config.cache.fetchTimeout)) : { reachable: true, authenticated: true }
      const ok = c.reachable && c.authenticated
      if (!ok) problems++
      out(`  ${ok ? 'ok  ' : 'FAIL'} ${name} (${config.providers[name]?.type}): ${c.reachable ? 'reachable' : 'unreachable'}, ${c.authenticated ? 'authenticated' : 'not authenticated'}${c.identity ? ` as ${c.identity}` : ''}${c.detail ? ` — ${c.detail}` : ''}`)
    } catch (err) {
      problems++
      out(`  FAIL ${name} (${config.providers[name]?.type}): ${describe(err)}`)
    }
  }
  out('credentials:')
  for (const c of Object.values(config.credentials)) {
    try {
      // A minted credential is checked end to end: stored secret, then the token exchange.
      const secret = c.mint
        ? (await broker.cache.get(c)).secret
        : await fetchWithRetry(await broker.providers.get(c.provider), c.ref, c.version, { attempts: 1, timeoutMs: config.cache.fetchTimeout, baseDelayMs: 0, maxDelayMs: 0 }, undefined)
      c.injector.render(secret.reveal())
      out(`  ok   ${c.name}: ${secret.fingerprint()}${secret.version ? ` (version ${secret.version})` : ''} → ${c.injector.headerName} for ${c.patterns.map((p) => p.source).join(', ')}`)
    } catch (err) {
      problems++
      out(`  FAIL ${c.name}: ${describe(err)}`)
    }
  }
  await Promise.all([broker.providers.closeAll(), broker.minters.closeAll()])
  out(problems === 0 ? 'all good' : `${problems} problem${problems === 1 ? '' : 's'}`)
  return problems === 0 ? 0 : 1
}

/**
 * `--dry-run URL`: ask the proxy's own TargetResolver, with the request a client would send
 * (absolute form through HTTP_PROXY for http://, CONNECT through HTTPS_PROXY for https://,
 * origin form for a URL on latchkey's own listener), so the answer is the proxy's answer.
 */
function explain(config: Config, raw: string, method: string, out: (s: string) => void): number {
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    out(`not an absolute URL: ${JSON.stringify(raw)}`)
    return 1
  }
  const host = normalizeHost(u.hostname)
  if (!host || (u.protocol !== 'http:' && u.protocol !== 'https:')) {
    out('only http:// and https:// URLs with a valid host can be checked')
    return 1
  }
  const tls = u.protocol === 'https:'
  const port = u.port ? Number(u.port) : tls ? 443 : 80
  const at = `${u.protocol}//${host}:${port}`
  const resolver = new TargetResolver(config)
  if (!tls && host === normalizeHost(config.listen.host) && port === config.listen.port) {
    return explainTarget(config, at, 'as a route on latchkey\'s listener', resolver.resolve(fakeRequest(rawPathOf(raw.trim()), u.host)), method, out)
  }
  if (!tls) return explainTarget(config, at, 'through the forward proxy (HTTP_PROXY)', resolver.resolve(fakeRequest(raw.trim(), u.host)), method, out, host, port)
  if (u.username || u.password) {
    out(`${at} → refused: 400 userinfo_not_allowed (a client sends no userinfo in CONNECT; latchkey never accepts it in a URL)`)
    return 1
  }
  const d = resolver.connect(`${host}:${port}`)
  if (isRefusal(d)) {
    if (d.code === 'egress_denied') out(`${at} → no credential is bound to this host; egress: deny (CONNECT would be refused with 403 egress_denied)`)
    else out(`${at} → CONNECT (HTTPS_PROXY) would be refused: ${ERROR_CODES[d.code].status} ${d.code}: ${d.message}`)
    if (d.code === 'intercept_disabled' || d.code === 'intercept_port_not_allowed') {
      // The same destination through the plain forward proxy: latchkey adds TLS itself.
      const plainUrl = `http://${host}${port === 443 ? '' : `:${port}`}${u.pathname}${u.search}`
      const alt = resolver.resolve(fakeRequest(plainUrl, `${host}${port === 443 ? '' : `:${port}`}`))
      if (!isRefusal(alt) && alt.credential) out(`  ${plainUrl} through the forward proxy (HTTP_PROXY) would get credential ${alt.credential.name}; latchkey connects with TLS to ${alt.host}`)
    }
    return 1
  }
  if (d.kind === 'intercept') {
    out(`${at} → credential ${credentialLine(d.credential)}`)
    out('  through CONNECT (HTTPS_PROXY) with TLS interception: the client must trust latchkey\'s CA')
    return explainAccess(config, d.credential, method, rawPathOf(raw.trim()), out)
  }
  out(`${at} → no credential is bound to this host; egress: passthrough (CONNECT becomes a blind tunnel, sent without injection)`)
  return 1
}

function explainTarget(config: Config, at: string, how: string, r: Resolution, method: string, out: (s: string) => void, host?: string, port?: number): number {
  if (isRefusal(r)) {
    if (r.code !== 'egress_denied') {
      out(`${at} → refused ${how}: ${ERROR_CODES[r.code].status} ${r.code}: ${r.message}`)
      return 1
    }
    out(`${at} → no credential is bound to this host; egress: deny (the request would be refused with 403 egress_denied)`)
    if (host !== undefined && port !== undefined) hintOtherPorts(config, host, port, out)
    return 1
  }
  if (!r.credential) {
    out(`${at} → no credential is bound to this destination; egress: ${config.egress} (sent ${how} without injection to ${r.origin})`)
    return 1
  }
  out(`${at} → credential ${credentialLine(r.credential)}`)
  if (r.origin.startsWith('https:') && !at.startsWith('https:')) out(`  ${how} latchkey connects with TLS to ${r.host}`)
  else out(`  ${how} latchkey connects to ${r.origin}`)
  return explainAccess(config, r.credential, method, r.path, out)
}

/** The proxy client token and the credential's allow rules, as the policy step would apply them to `path` (as sent upstream). */
function explainAccess(config: Config, c: CompiledCredential, method: string, path: string, out: (s: string) => void): number {
  if (config.proxyAuth !== undefined && (config.proxyAuth.required || c.requireProxyAuth)) out('  the client must present the proxy client token (Proxy-Authorization), else 407 proxy_auth_required')
  if (c.rules === undefined) {
    out(`  ${method}: no allow rules, every method and path is allowed`)
    return 0
  }
  const n = normalizeRequestPath(path)
  if (!n.ok) {
    out(`  ${method} → refused: 400 bad_request: ${n.reason}`)
    return 1
  }
  const d = decide(c.rules, method, n.path)
  if (d.allowed) {
    out(`  ${method} ${n.path} → allowed by credentials.${c.name}.allow[${d.rule}]${n.path + n.query !== path ? ` (sent as ${n.path}${n.query})` : ''}`)
    return 0
  }
  out(`  ${method} ${n.path} → refused: 403 policy_denied (no rule of credentials.${c.name}.allow matches)`)
  return 1
}

/** A bound host on another port or scheme is the usual mistake: say which patterns exist. */
function hintOtherPorts(config: Config, host: string, port: number, out: (s: string) => void): void {
  const sameHost = Object.values(config.credentials).filter((cr) => cr.patterns.some((p) => p.host === host || (p.wildcard && host.endsWith('.' + p.host))))
  if (sameHost.length > 0) out(`  ${sameHost.map((s) => s.name).join(', ')} bound to ${host} but not port ${port} (${sameHost.flatMap((s) => s.patterns.map((p) => p.source)).join(', ')})`)
}

function credentialLine(c: CompiledCredential): string {
  return `${c.name} (${c.injector.headerName}, provider ${c.provider}, pattern ${c.patterns.map((p) => p.source).join(', ')})`
}

/** The parts of a request the resolver reads. */
function fakeRequest(url: string, hostHeader: string): IncomingMessage {
  return { url, method: 'GET', headers: { host: hostHeader }, rawHeaders: ['Host', hostHeader] } as unknown as IncomingMessage
}

function describe(err: unknown): string {
  // A minted credential goes through the cache, which wraps the provider's or minter's error.
  const cause = (err as { cause?: unknown } | undefined)?.cause
  if (!(err instanceof ProviderError) && cause instanceof ProviderError) return describe(cause)
  if (err instanceof ProviderError) return `${err.code}: ${err.message}${err.providerCode && !err.message.includes(err.providerCode) ? ` (${err.providerCode})` : ''}`
  const e = err as { code?: string; message?: string }
  return `${e.code ?? 'error'}: ${e.message ?? 'failed'}`
}

function devNull(): Writable {
  return new Writable({ write: (_c, _e, cb) => cb() })
}
