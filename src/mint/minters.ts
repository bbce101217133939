import type { Logger } from 'pino'
import type { SecretCache } from '../cache/secret-cache.ts'
import type { CompiledCredential } from '../config/load.ts'
import { LatchkeyError, ProviderError } from '../errors.ts'
import { installHint, missingSdk } from '../providers/optional-sdk.ts'
import type { FetchOptions, SecretProvider } from '../providers/provider.ts'
import { SecretValue } from '../providers/secret-value.ts'
import type { MintSpec } from './compile.ts'

/** Shortest hold-down after a refusal: a short bustCooldown must not turn every request into a token request. */
export const MIN_HOLD_DOWN_MS = 10_000

/** What one token exchange produced. */
export interface Minted {
  readonly token: string
  /** The issuer's `expires_in`, in milliseconds from now, when it said. */
  readonly lifetimeMs: number | undefined
}

/** Context a minter gets with each call. */
export interface MintCall {
  signal: AbortSignal
  /** Register secret material the exchange sends or receives (an assertion, a refresh token) with the log scrubber, before it can appear anywhere. */
  hold(values: readonly string[]): void
}

/** One kind of token exchange (oauth2, gcp, azure). `secret` is the stored secret's text, undefined for the pod's own identity. */
export interface TokenMinter {
  mint(secret: string | undefined, call: MintCall): Promise<Minted>
  close?(): Promise<void>
}

export interface MintersOptions {
  /** The broker's cache: the stored secret is read (and busted) through it. */
  cache(): SecretCache
  /** Registers values with the log scrubber under a key (replacing that key's previous values). */
  hold(key: string, values: readonly string[]): void
  logger: Logger
  env: Readonly<Record<string, string | undefined>>
  /** Extra CAs (PEM) for token endpoints, from `upstream.caFile`. */
  ca: string | undefined
  /** After a refusal that a retry cannot fix, no new exchange with the same secret for this long (at least `MIN_HOLD_DOWN_MS`). */
  holdDownMs: number
  now?: () => number
}

/**
 * Stands in for the provider of minted credentials: the cache's fetch of such a credential
 * calls `for(credential).fetch(...)` through the same retry loop as a provider fetch. Each call
 * reads the stored secret through the cache, exchanges it for a token and returns the token
 * with its lifetime, so the cache refreshes it ahead of expiry and a 401 busts it as usual.
 */
export class Minters {
  readonly #opts: MintersOptions
  readonly #byName = new Map<string, SecretProvider>()
  readonly #minters: Array<Promise<TokenMinter>> = []

  constructor(opts: MintersOptions) {
    this.#opts = opts
  }

  for(credential: CompiledCredential & { mint: MintSpec }): SecretProvider {
    let p = this.#byName.get(credential.name)
    if (!p) {
      p = this.#create(credential, credential.mint)
      this.#byName.set(credential.name, p)
    }
    return p
  }

  async closeAll(): Promise<void> {
    const all = await Promise.allSettled(this.#minters)
    await Promise.allSettled(all.map((r) => (r.status === 'fulfilled' ? r.value.close?.() : undefined)))
  }

  #create(credential: CompiledCredential, spec: MintSpec): SecretProvider {
    const opts = this.#opts
    const now = opts.now ?? Date.now
    const holdDownMs = Math.max(opts.holdDownMs, MIN_HOLD_DOWN_MS)
    let minter: Promise<TokenMinter> | undefined
    const load = (): Promise<TokenMinter> => {
      if (!minter) {
        minter = loadMinter(spec, { env: opts.env, ca: opts.ca, logger: opts.logger }, credential.name)
        // A failed load (bad key file, SDK) is tried again on the next fetch.
        minter.catch(() => (minter = undefined))
        this.#minters.push(minter)
      }
      return minter
    }
    /** The last refusal that retrying cannot fix, and the secret it was made with. */
    let refused: { err: ProviderError; secret: SecretValue | undefined; at: number } | undefined
    const holdKey = `${credential.cacheKey}\u0000exchange`
    const exchange = async (secret: SecretValue | undefined, text: string | undefined, signal: AbortSignal): Promise<Minted> => {
      if (refused && now() - refused.at < holdDownMs && (secret === undefined ? refused.secret === undefined : secret.equals(refused.secret))) throw refused.err
      try {
        return await (await load()).mint(text, { signal, hold: (values) => opts.hold(holdKey, values) })
      } catch (err) {
        if (err instanceof ProviderError && !err.retryable && (err.code === 'provider_auth_failed' || err.code === 'provider_config')) refused = { err, secret, at: now() }
        throw err
      }
    }
    return {
      type: spec.kind,
      async fetch(_ref: string, { signal }: FetchOptions): Promise<SecretValue> {
        const source = spec.source ? await readSource(opts.cache(), spec.source) : undefined
        let minted: Minted
        try {
          minted = await exchange(source?.secret, source?.headerValue, signal)
        } catch (err) {
          // The client secret may have been rotated since it was cached: refetch it once (the
          // cache bounds this by bustCooldown) and try again with the new one.
          if (!(spec.source && source && err instanceof ProviderError && err.code === 'provider_auth_failed' && !err.retryable)) throw err
          const fresh = await opts.cache().bust(spec.source, source.secret)
          if (!fresh) throw err
          opts.logger.info({ event: 'mint_secret_refetched', credential: credential.name }, 'token endpoint refused the client; retrying with the refetched secret')
          minted = await exchange(fresh.secret, fresh.headerValue, signal)
        }
        return new SecretValue(minted.token, undefined, expiryOf(minted.lifetimeMs, spec.options.expirySkew))
      },
    }
  }
}

/** The stored secret through the cache; a provider failure keeps its own code (the cache wraps it as secret_unavailable). */
async function readSource(cache: SecretCache, source: CompiledCredential) {
  try {
    return await cache.get(source)
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause
    throw cause instanceof ProviderError ? cause : err instanceof LatchkeyError && err.code === 'invalid_secret' ? new ProviderError('invalid_secret', err.message) : err
  }
}

/** Cached until `expires_in` minus the skew (at most half the lifetime), never served past `expires_in`. */
export function expiryOf(lifetimeMs: number | undefined, skewMs: number): { ttlMs: number; usableMs: number } | undefined {
  if (lifetimeMs === undefined || !Number.isFinite(lifetimeMs) || lifetimeMs <= 0) return undefined
  return { ttlMs: Math.max(1, lifetimeMs - Math.min(skewMs, lifetimeMs / 2)), usableMs: lifetimeMs }
}

interface LoadContext {
  env: Readonly<Record<string, string | undefined>>
  ca: string | undefined
  logger: Logger
}

/** The optional SDK each kind imports (oauth2 and the SigV4 signer use dependencies of latchkey's own). */
export const MINTER_SDKS: Readonly<Record<MintSpec['kind'], readonly string[]>> = {
  oauth2: [],
  'gcp-access-token': ['google-auth-library'],
  'azure-access-token': ['@azure/identity'],
  'aws-sigv4': ['@aws-sdk/credential-providers'],
}

/** The minter for a kind, its SDK imported only when a credential of that kind is used; a missing SDK is named. */
async function loadMinter(spec: MintSpec, ctx: LoadContext, credential: string): Promise<TokenMinter> {
  try {
    return await importMinter(spec, ctx)
  } catch (err) {
    const missing = missingSdk(err, MINTER_SDKS[spec.kind])
    if (missing === undefined) throw err
    throw new ProviderError('provider_config', `credential "${credential}" (inject.type ${spec.kind}) ${installHint(missing)}`, { retryable: false })
  }
}

async function importMinter(spec: MintSpec, ctx: LoadContext): Promise<TokenMinter> {
  switch (spec.kind) {
    case 'oauth2':
      return (await import('./oauth2.ts')).createOAuth2Minter(spec, ctx)
    case 'gcp-access-token':
      return (await import('./gcp.ts')).createGcpMinter(spec, ctx)
    case 'azure-access-token':
      return (await import('./azure.ts')).createAzureMinter(spec, ctx)
    case 'aws-sigv4':
      return (await import('./sigv4.ts')).createAwsIdentityMinter()
  }
}

export type { LoadContext as MinterContext }
