import net from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { LookupFunction } from './dns-lookup.ts'
import { isLinkLocal } from './upstream.ts'
import { sendSocketError } from './respond.ts'

export interface TunnelOptions {
  connectTimeoutMs: number
  allowLinkLocal: boolean
  logger: Logger
  /** Name resolution for the destination (`passthroughLookup`: link-local answers refused unless allowed). */
  lookup: LookupFunction
}

/**
 * A blind CONNECT tunnel to a host no credential is bound to (egress: passthrough).
 * Nothing is injected or read; link-local destinations are refused unless allowed.
 */
export function openTunnel(client: Duplex, head: Buffer, host: string, port: number, o: TunnelOptions): Promise<void> {
  return new Promise((resolve) => {
    const bare = host.startsWith('[') ? host.slice(1, -1) : host
    const fail = (code: 'link_local_denied' | 'upstream_unreachable' | 'upstream_timeout', message: string) => {
      sendSocketError(client, code, message)
      resolve()
    }
    if (!o.allowLinkLocal && isLinkLocal(bare)) return fail('link_local_denied', `${host} is a link-local address; refused (upstream.allowLinkLocal)`)
    const upstream = net.connect({
      host: bare,
      port,
      timeout: o.connectTimeoutMs,
      lookup: o.lookup,
    })
    let connected = false
    upstream.once('timeout', () => {
      if (!connected) {
        upstream.destroy()
        fail('upstream_timeout', `connecting to ${host}:${port} timed out`)
      }
    })
    upstream.once('connect', () => {
      connected = true
      upstream.setTimeout(0)
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      if (head.length > 0) upstream.write(head)
      upstream.pipe(client)
      client.pipe(upstream)
      o.logger.info({ event: 'tunnel', host: `${host}:${port}` }, 'blind tunnel opened')
    })
    upstream.once('error', (err: NodeJS.ErrnoException) => {
      if (!connected) {
        if (err.code === 'link_local_denied') fail('link_local_denied', `${host} resolves to a link-local address; refused`)
        else fail('upstream_unreachable', `cannot connect to ${host}:${port} (${err.code ?? 'error'})`)
        return
      }
      client.destroy()
    })
    client.once('error', () => upstream.destroy())
    client.once('close', () => {
      upstream.destroy()
      resolve()
    })
    upstream.once('close', () => {
      client.destroy()
      resolve()
    })
  })
}
