import { ProviderError } from '../errors.ts'
import type { ProviderFactory } from './provider.ts'
import { installHint, missingSdk } from './optional-sdk.ts'
import { envProvider } from './env.ts'
import { fileProvider } from './file.ts'
import { vaultProvider } from './vault.ts'
import { awsProvider } from './aws.ts'
import { azureProvider } from './azure.ts'
import { gcpProvider } from './gcp.ts'

/**
 * Provider types by name. Each module here is light (a zod schema and a factory);
 * cloud SDKs are imported inside `create`, so only configured types load them.
 */
export const PROVIDERS: Readonly<Record<string, ProviderFactory>> = {
  env: envProvider,
  file: fileProvider,
  vault: needsSdk(vaultProvider, ['node-vault']),
  aws: needsSdk(awsProvider, ['@aws-sdk/client-secrets-manager', '@aws-sdk/client-sts', '@aws-sdk/credential-providers']),
  azure: needsSdk(azureProvider, ['@azure/keyvault-secrets', '@azure/identity']),
  gcp: needsSdk(gcpProvider, ['@google-cloud/secret-manager', 'google-gax']),
}

/** A provider type whose SDK, when missing, is named with the package to install. */
export function needsSdk<F extends ProviderFactory>(factory: F, packages: readonly string[]): F {
  return {
    ...factory,
    async create(options, ctx) {
      try {
        return await factory.create(options, ctx)
      } catch (err) {
        const missing = missingSdk(err, packages)
        if (missing === undefined) throw err
        throw new ProviderError('provider_config', `provider "${ctx.name}" (type ${factory.type}) ${installHint(missing)}`, { retryable: false })
      }
    },
  }
}
