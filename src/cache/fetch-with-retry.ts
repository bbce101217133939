import { setTimeout as sleep } from 'node:timers/promises'
import { LatchkeyError, ProviderError } from '../errors.ts'
import type { SecretProvider } from '../providers/provider.ts'
import type { SecretValue } from '../providers/secret-value.ts'

export interface RetryPolicy {
  attempts: number
  /** Timeout of one provider call. */
  timeoutMs: number
  baseDelayMs: number
  maxDelayMs: number
}

export interface FetchObserver {
  onAttempt?(result: 'ok' | string, ms: number): void
  onRetry?(err: ProviderError, delayMs: number): void
}

/**
 * Call a provider with latchkey's own timeout and a bounded retry loop (exponential
 * backoff with full jitter, honouring a service's Retry-After) for transient failures.
 * SDK retries are off in every provider, so this is the only retry loop.
 */
export async function fetchWithRetry(
  provider: SecretProvider,
  ref: string,
  version: string | undefined,
  policy: RetryPolicy,
  signal: AbortSignal | undefined,
  observer: FetchObserver = {},
): Promise<SecretValue> {
  let last: ProviderError | undefined
  for (let attempt = 1; attempt <= policy.attempts; attempt++) {
    const timeout = AbortSignal.timeout(policy.timeoutMs)
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout
    const started = performance.now()
    try {
      const value = await provider.fetch(ref, { signal: combined, version })
      observer.onAttempt?.('ok', performance.now() - started)
      return value
    } catch (err) {
      last = toProviderError(err, timeout.aborted)
      observer.onAttempt?.(last.code, performance.now() - started)
      if (signal?.aborted || !last.retryable || attempt === policy.attempts) throw last
      const backoff = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1))
      const delay = Math.min(policy.maxDelayMs, Math.max(last.retryAfterMs ?? 0, Math.random() * backoff))
      observer.onRetry?.(last, delay)
      await sleep(delay, undefined, signal ? { signal } : undefined).catch(() => undefined)
      if (signal?.aborted) throw last
    }
  }
  throw last ?? new ProviderError('provider_unavailable', 'provider fetch failed')
}

/** Anything a provider throws becomes a ProviderError; unknown errors keep only their class and code. */
export function toProviderError(err: unknown, timedOut: boolean): ProviderError {
  if (err instanceof ProviderError) return err
  if (timedOut || (err as { name?: string })?.name === 'AbortError' || (err as { name?: string })?.name === 'TimeoutError') {
    return new ProviderError('provider_timeout', 'provider did not answer in time', { retryable: true })
  }
  if (err instanceof LatchkeyError) return new ProviderError('provider_config', err.message)
  // Unknown errors may carry request configs or bodies: keep only name and code.
  const e = err as { name?: unknown; code?: unknown }
  const what = [typeof e?.name === 'string' ? e.name : 'Error', typeof e?.code === 'string' ? e.code : undefined].filter(Boolean).join(' ')
  return new ProviderError('provider_unavailable', `provider failed (${what})`, { providerCode: typeof e?.code === 'string' ? e.code : undefined, retryable: false })
}
