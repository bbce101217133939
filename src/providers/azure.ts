import { rootCertificates } from 'node:tls'
import type { TokenCredential } from '@azure/identity'
import type { SecretClient, SecretClientOptions } from '@azure/keyvault-secrets'
import { z } from 'zod'
import { ProviderError } from '../errors.ts'
import { FallbackTokenCredential } from './azure-credential.ts'
import { mapAzureError } from './azure-errors.ts'
import { readCaFile } from './ca-file.ts'
import type { ProviderCheck, ProviderContext, ProviderFactory, SecretProvider } from './provider.ts'
import { SecretValue } from './secret-value.ts'

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]'])

const optionsSchema = z
  .object({
    type: z.literal('azure'),
    /**
     * The vault (`https://my-vault.vault.azure.net`); else `AZURE_KEYVAULT_URL`. May be
     * omitted when every ref is a full secret URL (`https://my-vault.vault.azure.net/secrets/name[/version]`).
     */
    vaultUrl: z.url({ protocol: /^https?$/ }).optional(),
    /** Entra tenant of the identity (passed to `DefaultAzureCredential`); else `AZURE_TENANT_ID` as the SDK reads it. */
    tenantId: z.string().min(1).optional(),
    /**
     * Client id of a user-assigned managed identity or of the workload-identity app
     * registration; else `AZURE_CLIENT_ID` as the SDK reads it.
     */
    clientId: z.string().min(1).optional(),
    /** PEM CA bundle trusted for the vault's certificate on top of the system store (private endpoints behind a private CA); else `upstream.caFile`. */
    caFile: z.string().min(1).optional(),
    /**
     * Skip the SDK's check that the challenge's `resource` matches the vault's domain.
     * Needed for private DNS names that are not `*.vault.azure.net` (and for local tests).
     */
    disableChallengeResourceVerification: z.boolean().default(false),
    /** Allow plain `http://` to the vault. Only for a loopback `vaultUrl` (tests, a local emulator). */
    allowInsecureConnection: z.boolean().default(false),
  })
  .strict()
  .superRefine((o, ctx) => {
    // z.url has already reported a value that is not a URL; refinements still run after it, so never throw here.
    if (o.vaultUrl === undefined || !URL.canParse(o.vaultUrl)) return
    const u = new URL(o.vaultUrl)
    if (u.protocol === 'http:' && !o.allowInsecureConnection) {
      ctx.addIssue({ code: 'custom', path: ['vaultUrl'], message: 'vaultUrl must be https:// (plain http only with allowInsecureConnection: true, for a loopback vault)' })
    }
    if (o.allowInsecureConnection && !LOOPBACK.has(u.hostname)) {
      ctx.addIssue({ code: 'custom', path: ['allowInsecureConnection'], message: 'allowInsecureConnection is only allowed for a loopback vaultUrl (127.0.0.1, localhost, [::1])' })
    }
  })

type AzureOptions = z.infer<typeof optionsSchema>

/** Key Vault secret names: 1-127 letters, digits and dashes (also keeps refs from adding path segments). */
const SECRET_NAME = /^[0-9a-zA-Z-]{1,127}$/
const SECRET_VERSION = /^[0-9a-zA-Z]{1,64}$/

interface Target {
  vaultUrl: string
  name: string
  version: string | undefined
}

/**
 * The token scope for a vault: public cloud `https://vault.azure.net/.default`, and the
 * sovereign clouds' own Key Vault resources (the challenge names the same resource).
 */
export function vaultScope(vaultUrl: string): string {
  const host = new URL(vaultUrl).hostname
  for (const suffix of ['vault.azure.cn', 'vault.usgovcloudapi.net', 'vault.microsoftazure.de']) {
    if (host.endsWith('.' + suffix)) return `https://${suffix}/.default`
  }
  return 'https://vault.azure.net/.default'
}

/** `oid` / `appid` / `tid` claims of a JWT access token (never the token itself). */
export function tokenIdentity(token: string): string | undefined {
  const payload = token.split('.')[1]
  if (payload === undefined) return undefined
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>
    const parts = (['oid', 'appid', 'tid'] as const).flatMap((k) => (typeof claims[k] === 'string' && /^[0-9A-Za-z-]{1,64}$/.test(claims[k]) ? [`${k}=${claims[k]}`] : []))
    return parts.length > 0 ? parts.join(' ') : undefined
  } catch {
    return undefined
  }
}

/**
 * `azure`: Azure Key Vault secrets through `@azure/keyvault-secrets`, authenticated with
 * `DefaultAzureCredential` (workload identity, managed identity, environment, Azure CLI).
 *
 * Ref = the secret name (`api-token`), or a full secret URL
 * (`https://my-vault.vault.azure.net/secrets/api-token[/version]`). A credential's
 * `version` selects a version; else the latest. A disabled secret is `access_denied`
 * (Key Vault does not fall back to an older version); an expired one (`exp` in the past)
 * or a not-yet-valid one (`nbf`) is `invalid_secret`: Key Vault still returns its value,
 * latchkey refuses it.
 *
 * The identity SDK reads its own variables (`AZURE_*`, `IDENTITY_ENDPOINT`, ...) from the
 * process environment, not from `ctx.env`: in the daemon they are the same.
 */
export const azureProvider: ProviderFactory<typeof optionsSchema> = {
  type: 'azure',
  optionsSchema,
  async create(options: AzureOptions, ctx: ProviderContext): Promise<SecretProvider> {
    const where = `azure provider ${ctx.name}`
    const defaultVault = options.vaultUrl ?? ctx.env.AZURE_KEYVAULT_URL
    if (defaultVault !== undefined) checkVaultUrl(defaultVault, options, where)
    const ca = options.caFile ? readCaFile(options.caFile, where) : ctx.ca

    const [{ SecretClient }, { DefaultAzureCredential }] = await Promise.all([import('@azure/keyvault-secrets'), import('@azure/identity')])
    const credential: TokenCredential = new FallbackTokenCredential(
      new DefaultAzureCredential({
        ...(options.tenantId ? { tenantId: options.tenantId } : {}),
        ...(options.clientId ? { managedIdentityClientId: options.clientId, workloadIdentityClientId: options.clientId } : {}),
        // latchkey's own loop retries; SDK retries would multiply its attempts.
        retryOptions: { maxRetries: 0 },
      }),
    )
    const clientOptions: SecretClientOptions = {
      retryOptions: { maxRetries: 0 },
      disableChallengeResourceVerification: options.disableChallengeResourceVerification,
      allowInsecureConnection: options.allowInsecureConnection,
      // Node's `ca` replaces the system store, so the extra CA is added to it.
      ...(ca ? { tlsOptions: { ca: [...rootCertificates, ca] } } : {}),
      userAgentOptions: { userAgentPrefix: 'latchkey' },
    }
    // One client per vault: a full-URL ref may name another vault than vaultUrl.
    const clients = new Map<string, SecretClient>()
    const clientFor = (vaultUrl: string): SecretClient => {
      let c = clients.get(vaultUrl)
      if (!c) {
        c = new SecretClient(vaultUrl, credential, clientOptions)
        clients.set(vaultUrl, c)
      }
      return c
    }

    const target = (ref: string, version: string | undefined): Target => {
      let t: Target
      if (/^https?:\/\//i.test(ref)) {
        t = parseSecretUrl(ref, where)
        checkVaultUrl(t.vaultUrl, options, where)
      } else {
        if (defaultVault === undefined) {
          throw new ProviderError('provider_config', `${where}: ref ${JSON.stringify(ref)} is a secret name but no vault is configured (set vaultUrl or AZURE_KEYVAULT_URL, or use a full secret URL)`, { retryable: false })
        }
        t = { vaultUrl: new URL(defaultVault).origin, name: ref, version: undefined }
      }
      if (!SECRET_NAME.test(t.name)) {
        throw new ProviderError('provider_config', `${where}: ${JSON.stringify(t.name)} is not a Key Vault secret name (1-127 letters, digits and dashes)`, { retryable: false })
      }
      if (version !== undefined) {
        if (t.version !== undefined && t.version !== version) {
          throw new ProviderError('provider_config', `${where}: ref names version ${t.version} but the credential asks for version ${version}`, { retryable: false })
        }
        t.version = version
      }
      if (t.version !== undefined && !SECRET_VERSION.test(t.version)) {
        throw new ProviderError('provider_config', `${where}: ${JSON.stringify(t.version)} is not a Key Vault secret version id`, { retryable: false })
      }
      return t
    }

    return {
      type: 'azure',
      async fetch(ref, opts) {
        const t = target(ref, opts.version)
        const what = `secret ${t.name}${t.version ? ` version ${t.version}` : ''}`
        let secret
        try {
          secret = await clientFor(t.vaultUrl).getSecret(t.name, { ...(t.version ? { version: t.version } : {}), abortSignal: opts.signal })
        } catch (err) {
          throw mapAzureError(err, what, where, opts.signal)
        }
        const props = secret.properties
        const now = Date.now()
        if (props.expiresOn && props.expiresOn.getTime() <= now) {
          throw new ProviderError('invalid_secret', `${where}: ${what} expired at ${props.expiresOn.toISOString()} (set a new expiry or a new version)`, { providerCode: 'SecretExpired' })
        }
        if (props.notBefore && props.notBefore.getTime() > now) {
          throw new ProviderError('invalid_secret', `${where}: ${what} is not valid before ${props.notBefore.toISOString()}`, { providerCode: 'SecretNotYetValid' })
        }
        if (typeof secret.value !== 'string' || secret.value === '') throw new ProviderError('invalid_secret', `${where}: ${what} has no value`)
        return new SecretValue(secret.value, props.version)
      },
      async check(signal): Promise<ProviderCheck> {
        const vaultUrl = defaultVault === undefined ? undefined : new URL(defaultVault).origin
        let identity: string | undefined
        try {
          const token = await credential.getToken(vaultScope(vaultUrl ?? 'https://vault.azure.net'), { abortSignal: signal })
          if (!token) throw new ProviderError('provider_auth_failed', `${where}: the Azure credential returned no token`)
          identity = tokenIdentity(token.token) ?? 'an Azure identity (token is not a JWT)'
        } catch (err) {
          const mapped = mapAzureError(err, 'token request', where, signal)
          // The token comes from another endpoint (identity, Entra): its failure says nothing about the vault, so ask the vault itself.
          if (vaultUrl === undefined) return { reachable: mapped.code !== 'provider_unavailable' && mapped.code !== 'provider_timeout', authenticated: false, detail: `${mapped.message}; no vaultUrl to probe` }
          const reachable = await vaultAnswers(vaultUrl, ca, signal)
          return { reachable, authenticated: false, detail: `${mapped.message}; vault ${vaultUrl} ${reachable ? 'answers' : 'is not reachable'}` }
        }
        if (vaultUrl === undefined) return { reachable: true, authenticated: true, identity, detail: 'no vaultUrl: refs are full secret URLs, vault not probed' }
        // Listing one secret's metadata proves the vault answers and accepts the token;
        // a 403 (no list permission under least privilege) proves the same.
        try {
          await clientFor(vaultUrl).listPropertiesOfSecrets({ abortSignal: signal }).byPage({ maxPageSize: 1 }).next()
          return { reachable: true, authenticated: true, identity, detail: `vault ${vaultUrl}` }
        } catch (err) {
          const mapped = mapAzureError(err, `vault ${vaultUrl}`, where, signal)
          if (mapped.code === 'access_denied') return { reachable: true, authenticated: true, identity, detail: `vault ${vaultUrl} (listing not permitted, which least privilege allows)` }
          return { reachable: mapped.code !== 'provider_unavailable' && mapped.code !== 'provider_timeout', authenticated: mapped.code !== 'provider_auth_failed', identity, detail: mapped.message }
        }
      },
    }
  },
}

/**
 * Whether the vault answers an unauthenticated `GET /secrets` with any HTTP status (Key
 * Vault answers 401 with its challenge), over the same trust as the client (system roots
 * plus `ca`). Bounded by `signal` and 10 s.
 */
async function vaultAnswers(vaultUrl: string, ca: string | undefined, signal: AbortSignal): Promise<boolean> {
  const { Agent, request } = await import('undici')
  const dispatcher = new Agent({ connect: { ...(ca ? { ca: [...rootCertificates, ca] } : {}), timeout: 10_000 }, headersTimeout: 10_000 })
  try {
    const res = await request(`${vaultUrl}/secrets?api-version=7.5&maxresults=1`, { dispatcher, signal })
    await res.body.dump()
    return true
  } catch {
    return false
  } finally {
    await dispatcher.close()
  }
}

function checkVaultUrl(vaultUrl: string, options: AzureOptions, where: string): void {
  let u: URL
  try {
    u = new URL(vaultUrl)
  } catch {
    throw new ProviderError('provider_config', `${where}: vault URL ${JSON.stringify(vaultUrl)} is not a URL`, { retryable: false })
  }
  if (u.protocol === 'https:') return
  if (u.protocol === 'http:' && options.allowInsecureConnection && LOOPBACK.has(u.hostname)) return
  throw new ProviderError('provider_config', `${where}: vault URL ${u.origin} must be https:// (plain http only for a loopback vault with allowInsecureConnection)`, { retryable: false })
}

/** `https://vault/secrets/name[/version]` → its parts; anything else is a config error. */
function parseSecretUrl(ref: string, where: string): Target {
  let u: URL
  try {
    u = new URL(ref)
  } catch {
    throw new ProviderError('provider_config', `${where}: ref is not a valid secret URL`, { retryable: false })
  }
  const segs = u.pathname.split('/').filter(Boolean)
  if (segs[0] !== 'secrets' || segs.length < 2 || segs.length > 3 || u.search || u.hash || u.username || u.password) {
    throw new ProviderError('provider_config', `${where}: ref ${u.origin}${u.pathname} is not a secret URL like https://my-vault.vault.azure.net/secrets/name[/version]`, { retryable: false })
  }
  return { vaultUrl: u.origin, name: decodeURIComponent(segs[1]!), version: segs[2] === undefined ? undefined : decodeURIComponent(segs[2]) }
}
