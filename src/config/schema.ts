import { z } from 'zod'
import { mintInjectSchemas } from '../mint/schema.ts'
import { duration, filePath } from '../values/schema.ts'

/** `host:port` for a listener. Port 0 picks a free port (tests). */
const listenAddress = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9.-]+):\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:8181')

const logLevel = z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent'])

const injectBase = {
  /** Replace a client-sent header of the same name (default). `false` keeps the client's header. */
  overwrite: z.boolean().default(true),
}

/** How the secret is added to the request. */
export const injectSchema = z.discriminatedUnion('type', [
  /** `Authorization: Bearer {value}` */
  z.object({ type: z.literal('bearer'), ...injectBase }).strict(),
  /** `Authorization: Basic base64(username:password)` from JSON `username`/`password` or a plain `user:pass` string. */
  z.object({ type: z.literal('basic'), ...injectBase }).strict(),
  /** Any header; `value` is a template where `{value}` is the secret (or its field) and `{json.KEY}` a key of a JSON secret. */
  z
    .object({
      type: z.literal('header'),
      header: z.string().min(1),
      value: z.string().min(1).default('{value}'),
      ...injectBase,
    })
    .strict(),
  ...mintInjectSchemas,
])

export const credentialSchema = z
  .object({
    /** Name of an entry under `providers`. Optional only for a token minted from the pod's own identity (`gcp-access-token`, `azure-access-token`). */
    provider: z.string().min(1).optional(),
    /** Provider-specific reference: variable name, file name, Vault path, secret id or name. */
    ref: z.string().min(1).optional(),
    /** One key of a JSON / map secret. */
    field: z.string().min(1).optional(),
    /** Provider-specific version (Vault KV version, AWS VersionId, Azure version, GCP version number). */
    version: z.union([z.string().min(1), z.number().int().nonnegative()]).transform(String).optional(),
    /** Host patterns this credential may be sent to. Required and non-empty. */
    hosts: z.array(z.string().min(1)).min(1, 'hosts must list at least one host pattern: a credential is never sent anywhere by default'),
    inject: injectSchema,
    /** Lifetime of a fetched value; overrides `cache.ttl`. */
    ttl: duration.optional(),
    /** Allow sending this credential over plain http (loopback and dev only). */
    insecure: z.boolean().default(false),
    /** Fetch at start so readiness means "can inject"; overrides `cache.prefetch`. */
    prefetch: z.boolean().optional(),
    /** Also scrub the injected value from response bodies (headers are always scrubbed). */
    scrubResponses: z.boolean().default(false),
    /**
     * Method and path rules: a request to a bound host that no rule allows is refused with 403
     * `policy_denied` and not forwarded. Absent = every method and path (host binding only).
     */
    allow: z
      .array(
        z
          .object({
            /** HTTP methods, upper-case as sent (`GET`, `HEAD`); `"*"` for any. */
            methods: z.array(z.string()),
            /** Path globs on the normalised path: `*` within one segment, `**` across segments. */
            paths: z.array(z.string()),
          })
          .strict(),
      )
      .min(1, 'allow is empty, so every request would be refused; list rules, or remove allow for none')
      .optional(),
    /** Serve this credential only to clients that present the proxy client token (`proxyAuth`). */
    requireProxyAuth: z.boolean().default(false),
  })
  .strict()

export const routeSchema = z
  .object({
    /** Base URL: `http://127.0.0.1:8181/<route>/<rest>` → `<upstream>/<rest>`. */
    upstream: z.string().min(1),
  })
  .strict()

export const interceptSchema = z
  .object({
    /** Terminate TLS for CONNECT to credentialed hosts with latchkey's own CA. Default false. */
    enabled: z.boolean().default(false),
    /** Where the CA key (mode 0600) and certificate live; created when missing. */
    caDir: filePath.default('./.latchkey/ca'),
    /**
     * Lifetime of issued leaf certificates, 5m to 7d. Leaves are backdated a minute and renewed
     * after 3/4 of it, so a shorter one would be reissued all the time; a longer one keeps a
     * leaf key (in latchkey's memory) valid for longer than any pod needs.
     */
    leafTtl: duration.pipe(z.number().min(300_000, 'leafTtl must be at least 5m').max(604_800_000, 'leafTtl must be at most 7d')).default(86_400_000),
    /** Where to also write the public CA certificate for the app container (e.g. a shared emptyDir). */
    publicCaFile: filePath.optional(),
  })
  .strict()

const name = (what: string) => z.string().regex(/^[A-Za-z0-9_.-]+$/, `${what} names use letters, digits, _ . -`)
/** Key schemas of the three named records (validated one entry at a time by the loader's second stage). */
export const providerName = name('provider')
export const credentialName = name('credential')
export const routeName = name('route')
/** A provider entry before its type's own option schema runs (the loader does that). */
export const providerEntrySchema = z.object({ type: z.string() }).passthrough()

/**
 * The top-level keys. Provider entries are validated per type by the loader (each
 * provider module owns its option schema), so `providers` is a record of loose objects here.
 * Exported as a shape so the loader can re-parse each section on its own when the whole
 * document fails, and still run its cross-field checks on the parts that are valid.
 */
export const configShape = {
  /**
   * Proxy listener: reverse routes + forward proxy. `host:port`, or `unix:/path/to/proxy.sock`
   * for a Unix socket only local users with access to the file can reach (see `socket`).
   */
  listen: z
    .string()
    .regex(/^(unix:.+|(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9.-]+):\d{1,5})$/, 'expected host:port (127.0.0.1:8181) or unix:/path/to/proxy.sock')
    .default('127.0.0.1:8181'),
  /** The Unix socket of `listen: unix:...`: its file mode (octal, as a string) and owner. */
  socket: z
    .object({
      /** File mode of the socket, as an octal string ("0600": only its owner may connect; "0660": its group too). */
      mode: z.string().regex(/^0?[0-7]{3}$/, 'write the mode as an octal string, e.g. "0600" or "0660"').default('0600'),
      /** Numeric user id to own the socket (changing it needs the privilege to chown). */
      owner: z.number().int().min(0).optional(),
      /** Numeric group id of the socket (with mode "0660", the group whose members may connect). */
      group: z.number().int().min(0).optional(),
    })
    .strict()
    .default({ mode: '0600' }),
  /**
   * The proxy listener (`listen`) may bind an address other than loopback. Without this a
   * non-loopback `listen` is refused: anyone who can reach the proxy gets credentials
   * injected. `reason` says why the network may use it; a proxy client token will be another
   * way to satisfy this key.
   */
  exposed: z
    .object({
      reason: z.string().trim().min(10, 'exposed.reason must say why the proxy is reachable from the network (at least 10 characters)'),
    })
    .strict()
    .optional(),
  admin: z
    .object({
      /** Health, readiness, metrics and cache admin. */
      listen: listenAddress.default('127.0.0.1:8182'),
      /** Bearer token for mutating admin calls (use `${env:NAME}` or `${file:PATH}`). */
      token: z.string().min(16, 'admin token must be at least 16 characters').optional(),
      /** File holding the admin token (first line). */
      tokenFile: filePath.optional(),
    })
    .strict()
    .default({ listen: '127.0.0.1:8182' }),
  log: z
    .object({
      level: logLevel.default('info'),
      /** `json` lines, or `pretty` lines for people; unset: `pretty` when stdout is a terminal. */
      format: z.enum(['json', 'pretty']).optional(),
    })
    .strict()
    .default({ level: 'info' }),
  cache: z
    .object({
      /** Default lifetime of a fetched secret. */
      ttl: duration.default(300_000),
      maxEntries: z.number().int().positive().default(1000),
      /** While the provider fails, serve the old value at most this long past expiry. */
      maxStale: duration.default(900_000),
      /** After a 401/403, at most one refetch per credential per this interval. */
      bustCooldown: duration.default(10_000),
      /** Fetch every credential at start. */
      prefetch: z.boolean().default(true),
      /** Refresh entries in use when this fraction of their TTL has passed. */
      refreshAhead: z.number().gt(0).lt(1).default(0.8),
      /** Timeout for one provider call. */
      fetchTimeout: duration.default(10_000),
      /** Provider calls per fetch (first try + retries) for transient failures. */
      fetchAttempts: z.number().int().min(1).max(10).default(3),
    })
    .strict()
    .default({ ttl: 300_000, maxEntries: 1000, maxStale: 900_000, bustCooldown: 10_000, prefetch: true, refreshAhead: 0.8, fetchTimeout: 10_000, fetchAttempts: 3 }),
  upstream: z
    .object({
      /** Extra CAs trusted for upstream TLS, on top of the system store. */
      caFile: filePath.optional(),
      connectTimeout: duration.default(10_000),
      requestTimeout: duration.default(60_000),
      /** Bytes of request body buffered so a request can be replayed after a bust. */
      retryBodyLimit: z.number().int().nonnegative().default(65_536),
      /** Allow passthrough to link-local addresses (cloud metadata endpoints). Default false. */
      allowLinkLocal: z.boolean().default(false),
    })
    .strict()
    .default({ connectTimeout: 10_000, requestTimeout: 60_000, retryBodyLimit: 65_536, allowLinkLocal: false }),
  /** Limits of the proxy listener; unset keys take the defaults of `src/proxy/server-limits.ts`. */
  limits: z
    .object({
      maxConnections: z.number().int().positive().optional(),
      headersTimeout: duration.pipe(z.number().positive('headersTimeout must be above 0')).optional(),
      /** 0 for none. */
      requestTimeout: duration.optional(),
      keepAliveTimeout: duration.optional(),
      idleTimeout: duration.pipe(z.number().positive('idleTimeout must be above 0')).optional(),
    })
    .strict()
    .default({}),
  /**
   * A token clients present in `Proxy-Authorization` (Basic with the token as password, or
   * Bearer), checked in constant time and never forwarded. 407 `proxy_auth_required` without it.
   */
  proxyAuth: z
    .object({
      /** The token (use `${env:NAME}` or `${file:PATH}`), at least 16 characters. */
      token: z.string().min(16, 'proxyAuth token must be at least 16 characters').optional(),
      /** File holding the token (first line). */
      tokenFile: filePath.optional(),
      /** Every request needs the token (default); false: only credentials with `requireProxyAuth`. */
      required: z.boolean().default(true),
    })
    .strict()
    .optional(),
  /** One record per credentialed request and per refusal, on a sink of its own. */
  audit: z
    .object({
      enabled: z.boolean().default(true),
      /** `stdout` (lines marked `"audit":true`) or `file` (size-rotated, mode 0600). */
      sink: z.enum(['stdout', 'file']).default('stdout'),
      /** Audit file when `sink: file`. */
      file: filePath.optional(),
      /** Bytes before the file rotates. */
      maxSize: z.number().int().min(1024).default(10 * 1024 * 1024),
      /** Rotated files kept besides the current one. */
      keep: z.number().int().min(1).max(100).default(5),
      /** Fraction of successful (`injected`) records written; refusals, errors and replays always are. */
      sampling: z.number().min(0).max(1).default(1),
    })
    .strict()
    .default({ enabled: true, sink: 'stdout', maxSize: 10 * 1024 * 1024, keep: 5, sampling: 1 }),
  /** Hosts that no credential is bound to: deny (403) or passthrough. */
  egress: z.enum(['deny', 'passthrough']).default('deny'),
  intercept: interceptSchema.default({ enabled: false, caDir: './.latchkey/ca', leafTtl: 86_400_000 }),
  providers: z.record(providerName, providerEntrySchema).default({}),
  credentials: z.record(credentialName, credentialSchema).default({}),
  routes: z.record(routeName, routeSchema).default({}),
}

/** The raw top-level schema. */
export const configSchema = z.object(configShape).strict()

export type RawConfig = z.infer<typeof configSchema>
export type CredentialConfig = z.infer<typeof credentialSchema>
export type InjectConfig = z.infer<typeof injectSchema>
export type LogLevel = z.infer<typeof logLevel>
