import { formatListen } from '../config/listeners.ts'
import type { Config } from '../config/load.ts'

/**
 * What a user wants to confirm at start: where each credential comes from and the only hosts
 * it goes to, each route, the listeners. Names, refs and patterns only, never a value.
 */
export function startupSummary(config: Config, proxyUrl: string, adminUrl: string): string[] {
  const lines: string[] = []
  for (const c of Object.values(config.credentials)) {
    lines.push(`credential ${c.name}: ${c.provider}:${c.ref}${c.field ? `#${c.field}` : ''} → ${c.patterns.map((p) => p.source).join(', ')}`)
  }
  for (const r of Object.values(config.routes)) lines.push(`route /${r.name} → ${r.upstream.href.replace(/\/$/, '')}`)
  if (lines.length === 0) lines.push('no credentials configured: nothing will be injected')
  lines.push(`listening: proxy ${proxyUrl}, admin ${adminUrl}`)
  return lines
}

/**
 * `listen EADDRINUSE: address already in use 127.0.0.1:8181` does not say which listener nor
 * how to move it: name both. Other errors pass through as their message.
 */
export function listenFailure(err: unknown, config: Config, extra?: { name: string; address: string; setting: string }): string {
  const e = err as NodeJS.ErrnoException & { port?: number; address?: string }
  if (e.code !== 'EADDRINUSE' && e.code !== 'EACCES' && e.code !== 'EADDRNOTAVAIL') return e.message
  const why = e.code === 'EADDRINUSE' ? 'address already in use' : e.code === 'EACCES' ? 'permission denied' : 'address not available on this machine'
  const listeners = [
    { name: 'proxy listener', address: formatListen(config.listen), port: config.listen.port, setting: '--listen / listen' },
    { name: 'admin listener', address: `${config.admin.listen.host}:${config.admin.listen.port}`, port: config.admin.listen.port, setting: '--admin-listen / admin.listen' },
  ]
  const which = extra ?? listeners.find((l) => l.port === e.port) ?? listeners[0]!
  return `${which.name} ${which.address}: ${why}; stop the other process or choose another address with ${which.setting}`
}
