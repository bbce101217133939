import type { Clock } from '../../src/cache/clock.ts'
import { ProviderError } from '../../src/errors.ts'
import type { FetchOptions, SecretProvider } from '../../src/providers/provider.ts'
import { SecretValue } from '../../src/providers/secret-value.ts'

export interface SecretManagerModel {
  /** Calls per second the service answers; beyond it a call gets 429 with a Retry-After to the next second. */
  quotaPerSec: number
  /** Median latency of one call; latencies are log-normal with this median. */
  latencyMedianMs: number
  /** Log-normal sigma (0.6: p99 ≈ 4× the median). */
  latencySigma: number
  /** Windows [from, to) in which every call fails with 503 after its latency. */
  outages: ReadonlyArray<{ from: number; to: number }>
}

/**
 * A secret manager on the virtual clock: latency, a per-second quota (429 + Retry-After, as
 * Vault's rate-limit quotas and the cloud managers' throttling answer), outages, and a
 * generation per secret that a rotation bumps. It counts every call per second.
 */
export class SimulatedSecretManager {
  readonly calls: number[] = []
  readonly throttledCalls: number[] = []
  readonly failedCalls: number[] = []
  readonly #clock: Clock
  readonly #model: SecretManagerModel
  readonly #generation = new Map<string, number>()
  #window = -1
  #inWindow = 0

  constructor(clock: Clock, model: SecretManagerModel) {
    this.#clock = clock
    this.#model = model
  }

  rotate(ref: string): void {
    this.#generation.set(ref, this.generation(ref) + 1)
  }

  generation(ref: string): number {
    return this.#generation.get(ref) ?? 0
  }

  /** The provider one pod holds (per-pod call counts go to `onCall`). */
  provider(onCall?: (ref: string) => void): SecretProvider {
    return { type: 'simulated', fetch: (ref, opts) => this.#fetch(ref, opts, onCall) }
  }

  #fetch(ref: string, opts: FetchOptions, onCall: ((ref: string) => void) | undefined): Promise<SecretValue> {
    const now = this.#clock.now()
    const second = Math.floor(now / 1000)
    bump(this.calls, second)
    onCall?.(ref)
    if (second !== this.#window) {
      this.#window = second
      this.#inWindow = 0
    }
    const over = ++this.#inWindow > this.#model.quotaPerSec
    const down = this.#model.outages.some((o) => now >= o.from && now < o.to)
    if (over) bump(this.throttledCalls, second)
    else if (down) bump(this.failedCalls, second)
    const latency = this.#latency()
    return new Promise((resolve, reject) => {
      const cancel = this.#clock.setTimeout(() => {
        opts.signal.removeEventListener('abort', onAbort)
        if (over) reject(new ProviderError('throttled', 'rate limit quota exceeded', { providerCode: '429', retryAfterMs: (second + 1) * 1000 - now }))
        else if (down) reject(new ProviderError('provider_unavailable', 'service unavailable', { providerCode: '503' }))
        else resolve(new SecretValue(`${ref}-generation-${this.generation(ref)}`, String(this.generation(ref))))
      }, latency)
      const onAbort = () => {
        cancel()
        reject(Object.assign(new Error('aborted'), { name: 'AbortError' }))
      }
      opts.signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** Log-normal via Box-Muller on the clock's seeded random. */
  #latency(): number {
    const u = 1 - this.#clock.random()
    const v = this.#clock.random()
    const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
    return this.#model.latencyMedianMs * Math.exp(this.#model.latencySigma * z)
  }
}

function bump(a: number[], i: number): void {
  a[i] = (a[i] ?? 0) + 1
}
