import type { ProviderFactory } from './provider.ts'
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
  vault: vaultProvider,
  aws: awsProvider,
  azure: azureProvider,
  gcp: gcpProvider,
}
