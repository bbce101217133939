import { z } from 'zod'
import { ProviderError } from '../errors.ts'
import type { ProviderFactory, SecretProvider } from './provider.ts'
import { SecretValue } from './secret-value.ts'

const optionsSchema = z
  .object({
    type: z.literal('env'),
    /** Optional prefix prepended to every ref (`prefix: APP_`, ref `TOKEN` → `APP_TOKEN`). */
    prefix: z.string().default(''),
  })
  .strict()

/** `env`: ref = environment variable name. Read at every fetch, so a TTL refresh sees changes made by a wrapper. */
export const envProvider: ProviderFactory<typeof optionsSchema> = {
  type: 'env',
  optionsSchema,
  async create(options, ctx): Promise<SecretProvider> {
    return {
      type: 'env',
      async fetch(ref) {
        const name = options.prefix + ref
        const value = ctx.env[name]
        if (value === undefined || value === '') {
          throw new ProviderError('secret_not_found', `environment variable ${name} is not set or empty`, { providerCode: 'ENV_UNSET' })
        }
        return new SecretValue(value)
      },
      async check() {
        return { reachable: true, authenticated: true, identity: 'process environment' }
      },
    }
  },
}
