import { Writable } from 'node:stream'
import type { Config } from '../config/load.ts'
import { createBroker } from '../daemon.ts'
import { normalizeHost } from '../proxy/host-pattern.ts'
import { ProviderError } from '../errors.ts'
import { fetchWithRetry } from '../cache/fetch-with-retry.ts'
import type { CliIo } from './io.ts'

/**
 * `latchkey doctor`: per provider, reachable and authenticated (and as whom); per
 * credential, fetchable — shown by fingerprint only; with `--dry-run URL`, which
 * credential would be injected, or why none. Returns the exit code (0 ok, 1 a problem).
 */
export async function doctor(config: Config, io: CliIo, dryRun: string | undefined): Promise<number> {
  const out = (s: string) => io.stdout.write(s + '\n')
  let problems = 0
  if (dryRun !== undefined) return explain(config, dryRun, out)
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
      const provider = await broker.providers.get(c.provider)
      const secret = await fetchWithRetry(provider, c.ref, c.version, { attempts: 1, timeoutMs: config.cache.fetchTimeout, baseDelayMs: 0, maxDelayMs: 0 }, undefined)
      c.injector.render(secret.reveal())
      out(`  ok   ${c.name}: ${secret.fingerprint()}${secret.version ? ` (version ${secret.version})` : ''} → ${c.injector.headerName} for ${c.patterns.map((p) => p.source).join(', ')}`)
    } catch (err) {
      problems++
      out(`  FAIL ${c.name}: ${describe(err)}`)
    }
  }
  await broker.providers.closeAll()
  out(problems === 0 ? 'all good' : `${problems} problem${problems === 1 ? '' : 's'}`)
  return problems === 0 ? 0 : 1
}

function explain(config: Config, raw: string, out: (s: string) => void): number {
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
  const broker = createBroker({ config, env: {}, logStream: devNull(), processMetrics: false })
  const viaForward = tls ? undefined : broker.resolver.match(host, port === 80 ? 443 : port, true)
  const c = broker.resolver.match(host, port, tls) ?? viaForward
  if (c) {
    out(`${u.protocol}//${host}:${port} → credential ${c.name} (${c.injector.headerName}, provider ${c.provider}, pattern ${c.patterns.map((p) => p.source).join(', ')})`)
    if (!tls && viaForward) out(`  through the forward proxy latchkey connects with TLS to ${host}:${port === 80 ? 443 : port}`)
    return 0
  }
  const sameHost = Object.values(config.credentials).filter((cr) => cr.patterns.some((p) => p.host === host || (p.wildcard && host.endsWith('.' + p.host))))
  if (sameHost.length > 0) out(`${u.protocol}//${host}:${port} → no credential: ${sameHost.map((s) => s.name).join(', ')} bound to ${host} but not this port/scheme (${sameHost.flatMap((s) => s.patterns.map((p) => p.source)).join(', ')})`)
  else out(`${u.protocol}//${host}:${port} → no credential is bound to this host; egress: ${config.egress} (${config.egress === 'deny' ? 'the request would be refused with 403 egress_denied' : 'sent without injection'})`)
  return 1
}

function describe(err: unknown): string {
  if (err instanceof ProviderError) return `${err.code}: ${err.message}${err.providerCode && !err.message.includes(err.providerCode) ? ` (${err.providerCode})` : ''}`
  const e = err as { code?: string; message?: string }
  return `${e.code ?? 'error'}: ${e.message ?? 'failed'}`
}

function devNull(): Writable {
  return new Writable({ write: (_c, _e, cb) => cb() })
}
