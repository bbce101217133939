import { isIP } from 'node:net'
import { connect, rootCertificates } from 'node:tls'
import type { SecretManagerServiceClient } from '@google-cloud/secret-manager'
import { z } from 'zod'
import { ProviderError } from '../errors.ts'
import { raceAbort } from './abortable.ts'
import { readCaFile } from './ca-file.ts'
import { crc32c } from './crc32c.ts'
import { mapGcpError } from './gcp-errors.ts'
import type { ProviderCheck, ProviderContext, ProviderFactory, SecretProvider } from './provider.ts'
import { SecretValue } from './secret-value.ts'

const optionsSchema = z
  .object({
    type: z.literal('gcp'),
    /** Project id or number for short refs; else `GOOGLE_CLOUD_PROJECT`, `GCLOUD_PROJECT`, else the one the credentials name. */
    project: z
      .string()
      .regex(/^[A-Za-z0-9.:-]{1,100}$/, 'a project id (my-project) or number')
      .optional(),
    /**
     * Host name of the Secret Manager endpoint: a regional endpoint
     * (`secretmanager.europe-west1.rep.googleapis.com`, needed for regional secrets) or a
     * Private Service Connect name. Default `secretmanager.googleapis.com`.
     */
    apiEndpoint: z
      .string()
      .regex(/^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])$/, 'a host name without scheme, port or path')
      .optional(),
    /** Port of `apiEndpoint`. Default 443. */
    port: z.number().int().min(1).max(65535).optional(),
    /**
     * A credentials JSON file (service-account key, `external_account` for Workload
     * Identity Federation, `authorized_user`); else `GOOGLE_APPLICATION_CREDENTIALS`, else
     * Application Default Credentials (GKE Workload Identity / the metadata server, gcloud login).
     */
    credentialsFile: z.string().min(1).optional(),
    /** PEM CA bundle trusted for the endpoint's certificate on top of the system store (a private endpoint behind a private CA); else `upstream.caFile`. */
    caFile: z.string().min(1).optional(),
  })
  .strict()

type GcpOptions = z.infer<typeof optionsSchema>

const SECRET_ID = /^[A-Za-z0-9_-]{1,255}$/
const VERSION = /^(latest|[1-9][0-9]{0,18})$/
const PROJECT = /^[A-Za-z0-9.:-]{1,100}$/
const LOCATION = /^[a-z0-9-]{1,63}$/
const FULL_NAME = /^projects\/([^/]+)(?:\/locations\/([^/]+))?\/secrets\/([^/]+)(?:\/versions\/([^/]+))?$/

const UTF8 = new TextDecoder('utf-8', { fatal: true })

const noop = (): void => undefined
/** Stands in for the client's debug logger (see `makeClient`). */
const SILENT_LOG = Object.assign(noop, { info: noop, warn: noop, error: noop, debug: noop, sublog: () => SILENT_LOG, enabled: false })

/** `accessSecretVersion`'s answer, as far as latchkey reads it. */
interface AccessResponse {
  name?: string | null
  payload?: { data?: Uint8Array | string | null; dataCrc32c?: string | number | { toString(): string } | null } | null
}

/**
 * Build `projects/{p}[/locations/{l}]/secrets/{s}/versions/{v}` from a ref (a secret id or a
 * full name) and the credential's `version`; every part is checked so a ref cannot smuggle
 * extra path segments.
 */
export function resourceName(ref: string, version: string | undefined, project: string | undefined, where: string): string {
  const bad = (why: string) => new ProviderError('provider_config', `${where}: ${why}`, { retryable: false })
  let p: string | undefined
  let loc: string | undefined
  let id: string
  let v: string | undefined
  const full = FULL_NAME.exec(ref)
  if (full) {
    ;[, p, loc, id = '', v] = full
  } else if (SECRET_ID.test(ref)) {
    id = ref
    p = project
    if (p === undefined) throw bad(`ref ${JSON.stringify(ref)} is a secret id but no project is known (set project or GOOGLE_CLOUD_PROJECT, or use projects/P/secrets/S)`)
  } else {
    throw bad(`ref ${JSON.stringify(ref)} is neither a secret id nor projects/P/secrets/S[/versions/V]`)
  }
  if (!PROJECT.test(p ?? '')) throw bad(`${JSON.stringify(p)} is not a project id or number`)
  if (loc !== undefined && !LOCATION.test(loc)) throw bad(`${JSON.stringify(loc)} is not a location`)
  if (!SECRET_ID.test(id)) throw bad(`${JSON.stringify(id)} is not a secret id (letters, digits, _ and -)`)
  if (version !== undefined) {
    if (v !== undefined && v !== version) throw bad(`ref names version ${v} but the credential asks for version ${version}`)
    v = version
  }
  v ??= 'latest'
  if (!VERSION.test(v)) throw bad(`version ${JSON.stringify(v)} is neither latest nor a version number`)
  return `projects/${p}${loc === undefined ? '' : `/locations/${loc}`}/secrets/${id}/versions/${v}`
}

/**
 * Check the payload's CRC-32C (the client library does not) and decode it as UTF-8.
 * Mismatch or a missing checksum → `invalid_secret`: the value is never accepted.
 */
export function verifiedPayload(res: AccessResponse, what: string, where: string): string {
  const raw = res.payload?.data
  const data = typeof raw === 'string' ? Buffer.from(raw, 'base64') : raw instanceof Uint8Array ? raw : undefined
  if (data === undefined) throw new ProviderError('invalid_secret', `${where}: ${what}: the answer has no payload`, { providerCode: 'NO_PAYLOAD' })
  const sent = res.payload?.dataCrc32c
  if (sent === null || sent === undefined || String(sent) === '') {
    throw new ProviderError('invalid_secret', `${where}: ${what}: the answer carries no dataCrc32c; the value is not accepted without an integrity check`, { providerCode: 'CRC32C_MISSING' })
  }
  if (String(sent) !== String(crc32c(data))) {
    throw new ProviderError('invalid_secret', `${where}: ${what}: payload CRC-32C mismatch (corrupted in transit or storage); the value is not accepted`, { providerCode: 'CRC32C_MISMATCH' })
  }
  if (data.length === 0) throw new ProviderError('invalid_secret', `${where}: ${what} is empty`)
  try {
    return UTF8.decode(data)
  } catch {
    throw new ProviderError('invalid_secret', `${where}: ${what} is not UTF-8 text`, { providerCode: 'NOT_UTF8' })
  }
}

/** The part of a gax stub (a grpc-js Client) the reachability check uses. */
interface GrpcStub {
  getChannel(): { getConnectivityState(connect: boolean): number; watchConnectivityState(last: number, deadline: Date, cb: (err?: Error) => void): void }
}

/** grpc-js `connectivityState`: READY, TRANSIENT_FAILURE, SHUTDOWN. */
const READY = 2
const FAILED = new Set([3, 4])

/**
 * Whether the stub's channel gets READY; the first TRANSIENT_FAILURE (refused, TLS
 * rejected) answers no at once, where `waitForReady` would keep retrying to its deadline.
 * Bounded: at most 10 state changes and 10 s.
 */
async function channelConnects(stub: GrpcStub, signal: AbortSignal): Promise<boolean> {
  const channel = stub.getChannel()
  const deadline = new Date(Date.now() + 10_000)
  let state = channel.getConnectivityState(true)
  for (let i = 0; i < 10 && !signal.aborted; i++) {
    if (state === READY) return true
    if (FAILED.has(state)) return false
    const last = state
    const changed = await new Promise<boolean>((resolve) => channel.watchConnectivityState(last, deadline, (err) => resolve(err === undefined)))
    if (!changed) return false
    state = channel.getConnectivityState(false)
  }
  return state === READY
}

/** Whether `host:port` completes a TLS handshake (system roots plus `ca`) before `signal` fires or 10 s pass. */
function tlsAnswers(host: string, port: number, ca: string | undefined, signal: AbortSignal): Promise<boolean> {
  const name = host.replace(/^\[|\]$/g, '')
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false)
    const socket = connect({ host: name, port, ...(isIP(name) ? {} : { servername: name }), ALPNProtocols: ['h2'], ...(ca ? { ca: [...rootCertificates, ca] } : {}), timeout: 10_000 })
    const done = (ok: boolean) => {
      signal.removeEventListener('abort', onAbort)
      socket.destroy()
      resolve(ok)
    }
    const onAbort = () => done(false)
    signal.addEventListener('abort', onAbort, { once: true })
    socket.once('secureConnect', () => done(true))
    socket.once('error', () => done(false))
    socket.once('timeout', () => done(false))
  })
}

/**
 * `gcp`: Google Cloud Secret Manager through `@google-cloud/secret-manager` (gRPC).
 *
 * Ref = a secret id (`api-token`, in `project`) or a full name
 * (`projects/P/secrets/S[/versions/V]`, `projects/P/locations/L/secrets/S[/versions/V]`);
 * a credential's `version` selects a version, default `latest`. The payload's CRC-32C is
 * verified before the value is accepted. SDK retries are off (latchkey's loop retries);
 * latchkey's signal cancels the call.
 */
export const gcpProvider: ProviderFactory<typeof optionsSchema> = {
  type: 'gcp',
  optionsSchema,
  async create(options: GcpOptions, ctx: ProviderContext): Promise<SecretProvider> {
    const where = `gcp provider ${ctx.name}`
    // Only an explicit file is passed: GOOGLE_APPLICATION_CREDENTIALS is read by the auth
    // library's own ADC chain (which, unlike `keyFilename`, prints no deprecation warning).
    const keyFilename = options.credentialsFile
    const ca = options.caFile ? readCaFile(options.caFile, where) : ctx.ca
    let project = options.project ?? ctx.env.GOOGLE_CLOUD_PROJECT ?? ctx.env.GCLOUD_PROJECT

    const { SecretManagerServiceClient } = await import('@google-cloud/secret-manager')
    const grpc = ca ? (await import('google-gax')).grpc : undefined
    const makeClient = (): SecretManagerServiceClient => {
      // gax uses `sslCreds` as the whole channel credential (no token): compose the token in, as gax does for its default.
      const sslCreds =
        grpc && ca
          ? grpc.credentials.combineChannelCredentials(
              grpc.credentials.createSsl(Buffer.from([...rootCertificates, ca].join('\n'))),
              grpc.credentials.createFromGoogleCredential({
                async getRequestHeaders(url?: string) {
                  const headers = await (await c.auth.getClient()).getRequestHeaders(url)
                  const out: Record<string, string> = {}
                  headers.forEach((value: string, key: string) => (out[key] = value))
                  return out
                },
              }),
            )
          : undefined
      const c: SecretManagerServiceClient = new SecretManagerServiceClient({
        ...(options.apiEndpoint ? { apiEndpoint: options.apiEndpoint } : {}),
        ...(options.port ? { port: options.port } : {}),
        ...(keyFilename ? { keyFilename } : {}),
        ...(project ? { projectId: project } : {}),
        ...(sslCreds ? { sslCreds } : {}),
      })
      // The client logs every response (`%j`, payload included) when GOOGLE_SDK_NODE_LOGGING
      // names it, to stderr and past latchkey's redaction: silence it.
      Object.defineProperty(c, '_log', { value: SILENT_LOG, writable: true })
      return c
    }

    // Each client method calls `this.initialize().catch(err => { throw err })` and drops the
    // result: when the stub cannot be built (unreadable credentials file) every call would
    // leave an unhandled rejection, which ends the process. So the stub is awaited here first,
    // and a client whose stub failed is replaced, never called.
    let client = makeClient()
    let ready: Promise<unknown> | undefined
    const initialized = async (): Promise<SecretManagerServiceClient> => {
      const c = client
      ready ??= c.initialize()
      try {
        await ready
      } catch (err) {
        if (client === c) {
          client = makeClient()
          ready = undefined
          void c.close().catch(() => undefined)
        }
        throw err
      }
      return c
    }

    const projectFor = async (ref: string): Promise<string | undefined> => {
      if (project !== undefined || FULL_NAME.test(ref)) return project
      // A service-account key or the metadata server names the project.
      try {
        project = await client.getProjectId()
      } catch {
        return undefined
      }
      return project
    }

    return {
      type: 'gcp',
      async fetch(ref, opts) {
        const name = resourceName(ref, opts.version, await projectFor(ref), where)
        const what = `secret ${name}`
        let res: AccessResponse
        try {
          const c = await initialized()
          ;[res] = await c.accessSecretVersion({ name }, { retry: null, signal: opts.signal })
        } catch (err) {
          throw mapGcpError(err, what, where, opts.signal)
        }
        const value = verifiedPayload(res, what, where)
        const version = typeof res.name === 'string' ? /\/versions\/([0-9]+)$/.exec(res.name)?.[1] : undefined
        return new SecretValue(value, version)
      },
      async check(signal): Promise<ProviderCheck> {
        const host = options.apiEndpoint ?? 'secretmanager.googleapis.com'
        const port = options.port ?? 443
        const endpoint = `${host}:${port}`
        // The auth client takes no signal: its calls are raced against ours (mapGcpError maps the AbortError).
        const aborted = () => Object.assign(new Error('aborted'), { name: 'AbortError' })
        // The token and the endpoint are probed separately: a token that cannot be had (bad
        // credentials, an unreachable token endpoint) says nothing about Secret Manager itself.
        const token = (async (): Promise<{ identity: string } | { error: string }> => {
          try {
            const t = await raceAbort(() => client.auth.getAccessToken(), signal, aborted)
            if (!t) return { error: `${where}: the credentials gave no access token` }
            const creds = await raceAbort(() => client.auth.getCredentials(), signal, aborted).catch(() => ({}) as { client_email?: string })
            return { identity: creds.client_email ?? (keyFilename ? `credentials file ${keyFilename}` : ctx.env.GOOGLE_APPLICATION_CREDENTIALS ? `credentials file ${ctx.env.GOOGLE_APPLICATION_CREDENTIALS}` : 'Application Default Credentials') }
          } catch (err) {
            return { error: mapGcpError(err, 'access token', where, signal).message }
          }
        })()
        const channel = (async (): Promise<boolean> => {
          let stub: GrpcStub
          try {
            stub = (await (await initialized()).initialize()) as unknown as GrpcStub
          } catch {
            // No stub without loadable credentials: a TLS handshake still tells whether the endpoint answers.
            return tlsAnswers(host, port, ca, signal)
          }
          // Connecting the channel (TLS included, through any gRPC proxy) proves the endpoint
          // answers without touching a secret or needing a token.
          return channelConnects(stub, signal)
        })()
        const [auth, reachable] = await Promise.all([token, channel])
        const at = `endpoint ${endpoint}${project ? `, project ${project}` : ''}`
        if ('error' in auth) return { reachable, authenticated: false, detail: `${auth.error}; ${at} ${reachable ? 'answers' : 'is not reachable'}` }
        return { reachable, authenticated: true, identity: auth.identity, detail: reachable ? at : `${at} is not reachable` }
      },
      async close() {
        // close() awaits the stub, which rejects when the channel never came up (bad credentials file).
        await client.close().catch(() => undefined)
      },
    }
  },
}
