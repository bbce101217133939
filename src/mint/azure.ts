import { rootCertificates } from 'node:tls'
import type { TokenCredential } from '@azure/identity'
import { ProviderError } from '../errors.ts'
import { mapAzureError } from '../providers/azure-errors.ts'
import type { MintSpec } from './compile.ts'
import type { MintCall, Minted, MinterContext, TokenMinter } from './minters.ts'

/**
 * A Microsoft Entra access token via @azure/identity: `ClientSecretCredential` with a client
 * secret held in a provider, else `DefaultAzureCredential` (workload identity, managed identity,
 * environment, Azure CLI). A new credential per exchange: MSAL's token cache would hand back
 * the token that the upstream just refused.
 */
export async function createAzureMinter(spec: MintSpec, ctx: MinterContext): Promise<TokenMinter> {
  const o = spec.options
  if (o.type !== 'azure-access-token') throw new Error('not an azure-access-token credential')
  const { ClientSecretCredential, DefaultAzureCredential } = await import('@azure/identity')
  const where = 'azure access token'
  const common = {
    // latchkey's own loop retries; SDK retries would multiply its attempts.
    retryOptions: { maxRetries: 0 },
    // A named authority (sovereign or private cloud) is used as given, without asking the public cloud about it.
    ...(o.authorityHost ? { authorityHost: o.authorityHost, disableInstanceDiscovery: true } : {}),
    // Node's `ca` replaces the system store, so the extra CA is added to it.
    ...(ctx.ca ? { tlsOptions: { ca: [...rootCertificates, ctx.ca] } } : {}),
  }
  return {
    async mint(secret: string | undefined, call: MintCall): Promise<Minted> {
      const credential: TokenCredential =
        secret !== undefined
          ? new ClientSecretCredential(o.tenantId as string, o.clientId as string, secret, common)
          : new DefaultAzureCredential({
              ...common,
              ...(o.tenantId ? { tenantId: o.tenantId } : {}),
              ...(o.clientId ? { managedIdentityClientId: o.clientId, workloadIdentityClientId: o.clientId } : {}),
            })
      let token
      try {
        token = await credential.getToken([...o.scopes], { abortSignal: call.signal })
      } catch (err) {
        const mapped = mapAzureError(err, 'access token', where, call.signal)
        // Entra answers a wrong client secret with HTTP 401 (AADSTS7000215): the client is refused.
        throw mapped.code === 'provider_auth_failed' && !mapped.retryable && secret !== undefined && /\b40[01]\b/.test(mapped.providerCode ?? '')
          ? new ProviderError('provider_auth_failed', `${where}: Entra refused the client secret`, { providerCode: mapped.providerCode, retryable: false })
          : mapped
      }
      if (!token) throw new ProviderError('provider_auth_failed', `${where}: the Azure credential returned no token`)
      return { token: token.token, lifetimeMs: token.expiresOnTimestamp - Date.now() }
    },
  }
}
