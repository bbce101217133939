import type { Logger } from 'pino'
import type { ProviderConfig } from '../config/load.ts'
import { ProviderError } from '../errors.ts'
import type { SecretProvider } from './provider.ts'
import { PROVIDERS } from './registry.ts'

/**
 * The configured providers, created on first use and re-created after a failed
 * creation (a Vault that is down at start must not need a restart later). A provider
 * that cannot be created fails only the credentials that use it.
 */
export class ProviderPool {
  readonly #configs: Readonly<Record<string, ProviderConfig>>
  readonly #created = new Map<string, Promise<SecretProvider>>()
  readonly #env: Readonly<Record<string, string | undefined>>
  readonly #logger: Logger
  readonly #ca: string | undefined

  constructor(configs: Readonly<Record<string, ProviderConfig>>, env: Readonly<Record<string, string | undefined>>, logger: Logger, ca: string | undefined) {
    this.#configs = configs
    this.#env = env
    this.#logger = logger
    this.#ca = ca
  }

  get(name: string): Promise<SecretProvider> {
    const existing = this.#created.get(name)
    if (existing) return existing
    const cfg = this.#configs[name]
    const factory = cfg ? PROVIDERS[cfg.type] : undefined
    if (!cfg || !factory) return Promise.reject(new ProviderError('provider_config', `no provider named ${name}`))
    const logger = this.#logger.child({ provider: name })
    const p = factory.create(cfg.options, { name, logger, env: this.#env, ca: this.#ca }).catch((err: unknown) => {
      this.#created.delete(name)
      if (err instanceof ProviderError) throw err
      throw new ProviderError('provider_config', `provider ${name} (${cfg.type}) could not be created: ${(err as Error)?.message ?? 'error'}`)
    })
    this.#created.set(name, p)
    return p
  }

  async closeAll(): Promise<void> {
    const all = [...this.#created.values()]
    this.#created.clear()
    await Promise.allSettled(all.map(async (p) => (await p).close?.()))
  }
}
