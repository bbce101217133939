import type { CompiledCredential } from '../../src/config/load.ts'

/**
 * A compiled bearer credential as the cache sees it, for tests (and the fleet simulation) that
 * drive `SecretCache` without a config file: only the fields the cache and its keeper read.
 */
export function bearerCredential(name: string, ttlMs: number, provider = 'p'): CompiledCredential {
  return {
    name,
    provider,
    ref: name,
    field: undefined,
    version: undefined,
    patterns: [],
    injector: { headerName: 'authorization', overwrite: true, render: (v: string) => `Bearer ${v}`, secretForms: (v: string) => [v] },
    ttlMs,
    insecure: false,
    prefetch: true,
    cacheKey: `${provider}\u0000${name}`,
  } as unknown as CompiledCredential
}
