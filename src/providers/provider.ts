import type { Logger } from 'pino'
import type { z } from 'zod'
import type { SecretValue } from './secret-value.ts'

/** Options for one fetch. The signal carries latchkey's own timeout; honour it. */
export interface FetchOptions {
  signal: AbortSignal
  /** The credential's `version` (provider-specific meaning), if set. */
  version?: string | undefined
}

/** What `latchkey doctor` reports about a provider. */
export interface ProviderCheck {
  reachable: boolean
  authenticated: boolean
  /** Who we are to the secret manager, when the SDK tells (never a secret). */
  identity?: string | undefined
  detail?: string | undefined
}

/**
 * A secret source. One file per type under `src/providers/`, registered by type name
 * in `registry.ts`. SDKs are imported lazily inside `create` so that a config with
 * only env/file providers never loads a cloud SDK.
 *
 * `fetch` returns the secret as text: a map/JSON secret is returned as its JSON text;
 * `field` selection and injection rendering happen centrally. Failures throw
 * `ProviderError` with a mapped code, the provider's own code kept in `providerCode`.
 */
export interface SecretProvider {
  readonly type: string
  fetch(ref: string, opts: FetchOptions): Promise<SecretValue>
  check?(signal: AbortSignal): Promise<ProviderCheck>
  close?(): Promise<void>
}

/** What a provider gets from the daemon. `env` is the only view of the environment. */
export interface ProviderContext {
  /** The provider's name in the config (`providers.<name>`). */
  name: string
  logger: Logger
  env: Readonly<Record<string, string | undefined>>
  /** Extra CA certificates (PEM) from `upstream.caFile`, for providers that speak TLS. */
  ca?: string | undefined
}

export interface ProviderFactory<S extends z.ZodType = z.ZodType> {
  type: string
  /** Strict zod object schema for `providers.<name>` with `type: z.literal(<type>)`. */
  optionsSchema: S
  create(options: z.infer<S>, ctx: ProviderContext): Promise<SecretProvider>
}
