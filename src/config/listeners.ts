import { isIPv4 } from 'node:net'
import type { ConfigIssue } from '../errors.ts'

export interface ListenAddress {
  host: string
  port: number
  /** A Unix socket (`listen: unix:/path`): host and port are then '' and 0. Reachable only through the file system, so local. */
  path?: string | undefined
}

/** `unix:/path` or host:port, as a listen address is written. */
export function formatListen(a: ListenAddress): string {
  if (a.path !== undefined) return `unix:${a.path}`
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`
}

/**
 * `unix:/path` (relative paths against `baseDir`) or host:port; port 0 (pick a free port) is
 * valid for a listener. The socket path must fit `sun_path` (107 bytes on Linux).
 */
export function parseListenAddress(value: string, resolvePath: ((p: string) => string) | undefined): ListenAddress | string {
  if (value.startsWith('unix:')) {
    if (resolvePath === undefined) return 'a Unix socket is only available for the proxy listener'
    const p = value.slice('unix:'.length)
    if (p === '') return 'unix: needs a socket path, e.g. unix:/run/latchkey/proxy.sock'
    const full = resolvePath(p)
    if (Buffer.byteLength(full) > 107) return `the socket path ${full} is longer than the 107 bytes a Unix socket path may have`
    return { host: '', port: 0, path: full }
  }
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([a-zA-Z0-9.-]+)):(\d{1,5})$/.exec(value)
  if (!m) return `expected host:port${resolvePath ? ' or unix:/path' : ''}, got ${JSON.stringify(value)}`
  const port = Number(m[3])
  if (port > 65535) return `port ${port} is out of range (0-65535; 0 picks a free port)`
  return { host: (m[1] ?? m[2]) as string, port }
}

/** What the listener rule reads from a config (also after `--listen` / `--admin-listen`). */
export interface ListenerSettings {
  readonly listen: ListenAddress
  /** `exposed`: the proxy listener may bind a non-loopback address, for the reason given. */
  readonly exposed: { readonly reason: string } | undefined
  readonly admin: { readonly listen: ListenAddress; readonly token: string | undefined }
}

export interface ListenerReport {
  issues: ConfigIssue[]
  warnings: string[]
}

/**
 * Whether a listen host (as written in `listen` / `admin.listen`, or as `server.address()`
 * reports it) only accepts connections from this machine (or pod): 127.0.0.0/8, ::1, their
 * IPv4-mapped form, and `localhost`. Any other name may resolve anywhere, so it counts as
 * exposed; so do the wildcards 0.0.0.0 and ::.
 */
export function isLoopbackHost(host: string): boolean {
  let h = host.toLowerCase()
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1)
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true
  if (h.startsWith('::ffff:')) h = h.slice('::ffff:'.length)
  return isIPv4(h) && h.startsWith('127.')
}

const address = formatListen

/**
 * The listener rule. A proxy listener off loopback injects credentials into requests from
 * anyone who can reach it, so it must be chosen explicitly (`exposed.reason`); without that
 * the config is refused, naming the key. An admin listener off loopback is allowed (kubelet
 * probes reach the pod IP) but serves only /healthz and /readyz without the admin token;
 * both facts are reported as warnings so `check` and the start log say them.
 */
export function checkListeners(s: ListenerSettings, keys: { listen: string; adminListen: string } = { listen: 'listen', adminListen: 'admin.listen' }): ListenerReport {
  const issues: ConfigIssue[] = []
  const warnings: string[] = []
  if (s.listen.path === undefined && !isLoopbackHost(s.listen.host)) {
    if (s.exposed === undefined) {
      issues.push({
        path: keys.listen,
        message: `${address(s.listen)} is not a loopback address: anyone who can reach it would get credentials injected into their requests. Keep the proxy on 127.0.0.1, or make this an explicit choice with exposed: { reason: "<why the network may use this proxy>" } (LATCHKEY_EXPOSED_REASON in env-only mode)`,
      })
    } else {
      warnings.push(`the proxy listener ${address(s.listen)} is reachable from the network (exposed.reason is set): anyone who can reach it gets credentials injected into requests to the bound hosts`)
    }
  }
  if (!isLoopbackHost(s.admin.listen.host)) {
    warnings.push(
      s.admin.token === undefined
        ? `the admin listener ${address(s.admin.listen)} is not on loopback: /healthz and /readyz answer anyone who can reach it; /metrics and the cache calls are refused (403 admin_disabled) until an admin token is set (admin.token or admin.tokenFile)`
        : `the admin listener ${address(s.admin.listen)} is not on loopback: /healthz and /readyz answer anyone who can reach it; /metrics and the cache calls need the admin token (Authorization: Bearer <token>)`,
    )
  }
  return { issues, warnings }
}
