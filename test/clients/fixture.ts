import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { Daemon } from '../../src/daemon.ts'
import { createInterceptor, type Interceptor } from '../../src/intercept/interceptor.ts'
import { startTestDaemon } from '../helpers/daemon.ts'
import { captureLogs, type LogCapture } from '../helpers/log-capture.ts'
import { createTestCa } from '../helpers/test-ca.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

export const CANARY = 'canary-icpt-6d1f0b9e2a'

/**
 * A daemon with interception on, in front of one local HTTPS upstream (test CA, names
 * `localhost` and `127.0.0.1`). The credential is bound to `localhost:<port>` only, and
 * egress is passthrough, so `https://127.0.0.1:<port>` is the same server reached through a
 * blind tunnel without a credential. The upstream answers with what it saw, never the value.
 */
export interface InterceptFixture {
  readonly dir: string
  readonly daemon: Daemon
  readonly upstream: Upstream
  readonly proxyUrl: string
  /** The credentialed (intercepted) destination. */
  boundUrl(p: string): string
  /** The same server under a name no credential is bound to. */
  unboundUrl(p: string): string
  /** The bound destination as an `http://` URL: for the plain forward proxy, where latchkey makes the TLS connection. */
  plainUrl(p: string): string
  /** latchkey's CA certificate (what NODE_EXTRA_CA_CERTS points at). */
  readonly caFile: string
  /** System roots + latchkey's CA (what SSL_CERT_FILE / REQUESTS_CA_BUNDLE / curl --cacert point at). */
  readonly bundleFile: string
  /**
   * The test upstream's CA only. A client reaching the unbound name trusts this alone: had
   * latchkey intercepted that tunnel, the client would see latchkey's leaf and fail.
   */
  readonly upstreamCaFile: string
  readonly logs: LogCapture
  close(): Promise<void>
}

export async function startInterceptFixture(): Promise<InterceptFixture> {
  const dir = await mkdtemp(path.join(tmpdir(), 'latchkey-intercept-'))
  const testCa = await createTestCa()
  const upstreamCaFile = path.join(dir, 'upstream-ca.pem')
  await writeFile(upstreamCaFile, testCa.caPem)
  const upstream = await startUpstream(await testCa.issue(['localhost', '127.0.0.1']))
  upstream.handle((req, res) => {
    const auth = req.headers.authorization
    const credential = auth === undefined ? 'absent' : auth === `Bearer ${CANARY}` ? 'present' : 'other'
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ path: req.url, host: req.headers.host, credential }))
  })
  const logs = captureLogs()
  let interceptor: Interceptor | undefined
  const daemon = await startTestDaemon(
    {
      baseDir: dir,
      env: { LK_TEST_TOKEN: CANARY },
      logStream: logs.stream,
      config: {
        upstream: { caFile: 'upstream-ca.pem' },
        egress: 'passthrough',
        intercept: { enabled: true, caDir: 'ca' },
        providers: { dev: { type: 'env' } },
        credentials: { api: { provider: 'dev', ref: 'LK_TEST_TOKEN', hosts: [`localhost:${upstream.port}`], inject: { type: 'bearer' } } },
      },
    },
    { interceptor: async (broker, forwarder) => (interceptor = await createInterceptor(broker, forwarder)) },
  )
  const caFile = path.join(dir, 'ca', 'ca.pem')
  const bundleFile = path.join(dir, 'ca', 'ca-bundle.pem')
  return {
    dir,
    daemon,
    upstream,
    proxyUrl: daemon.proxyUrl,
    boundUrl: (p) => `https://localhost:${upstream.port}${p}`,
    unboundUrl: (p) => `https://127.0.0.1:${upstream.port}${p}`,
    plainUrl: (p) => `http://localhost:${upstream.port}${p}`,
    caFile,
    bundleFile,
    upstreamCaFile,
    logs,
    async close() {
      // Together: the daemon's proxy waits for tunnel sockets that only the interceptor can end.
      await Promise.all([interceptor?.close(2000), daemon.close(2000)])
      await upstream.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
}
