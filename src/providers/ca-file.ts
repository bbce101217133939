import { readFileSync } from 'node:fs'
import { ProviderError } from '../errors.ts'

/**
 * Reads a provider's `caFile` once at start. A file that cannot be read, or holds no PEM
 * certificate, is a `provider_config` error naming the file (the reason is the errno code
 * or a short description, never the file's content).
 *
 * @param file path of the PEM file
 * @param where the provider's label for the message (`vault provider main`)
 * @returns the PEM text
 */
export function readCaFile(file: string, where: string): string {
  try {
    const pem = readFileSync(file, 'utf8')
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate')
    return pem
  } catch (err) {
    throw new ProviderError('provider_config', `${where}: cannot use caFile ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { retryable: false })
  }
}
