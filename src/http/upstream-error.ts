import type { ErrorCode } from '../errors.ts'

/** Map a connection/transport error to a stable code and a message without request details. */
export function mapUpstreamError(err: unknown, host: string): { code: ErrorCode; message: string } {
  const e = err as { code?: string; name?: string; cause?: { code?: string } }
  const code = e?.code ?? e?.cause?.code ?? e?.name ?? ''
  if (code === 'link_local_denied') return { code: 'link_local_denied', message: `${host} resolves to a link-local address; refused (upstream.allowLinkLocal)` }
  if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'ETIMEDOUT') {
    return { code: 'upstream_timeout', message: `upstream ${host} did not answer in time` }
  }
  if (/^(ERR_TLS|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|ERR_SSL|EPROTO$|HOSTNAME_MISMATCH)/.test(code) || /certificate|TLS|SSL/i.test(String((err as Error)?.message ?? ''))) {
    return { code: 'upstream_tls_error', message: `TLS to ${host} failed (${code || 'handshake'}): the certificate must be valid for the bound host name and trusted (upstream.caFile)` }
  }
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
    return { code: 'upstream_unreachable', message: `cannot connect to ${host} (${code})` }
  }
  return { code: 'upstream_error', message: `upstream ${host} failed (${code || 'connection error'})` }
}
