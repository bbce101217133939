import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

type CounterChild = ReturnType<Counter<string>['labels']>
type HistogramChild = ReturnType<Histogram<string>['labels']>

/**
 * Every metric latchkey exports, on its own registry (never the global one, so an
 * embedding app's metrics and ours do not collide). Names are prefixed `latchkey_`.
 * Label values are config names and fixed outcome words — never hosts from requests
 * (unbounded) and never secret material.
 */
export class Metrics {
  readonly registry = new Registry()
  readonly requests = new Counter({ name: 'latchkey_requests_total', help: 'Proxied requests by mode and outcome', labelNames: ['mode', 'outcome'] as const, registers: [this.registry] })
  readonly requestDuration = new Histogram({
    name: 'latchkey_request_duration_seconds',
    help: 'Time from request received to response headers sent',
    labelNames: ['mode'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  })
  readonly injections = new Counter({ name: 'latchkey_injections_total', help: 'Requests a credential was injected into', labelNames: ['credential'] as const, registers: [this.registry] })
  readonly denials = new Counter({ name: 'latchkey_denials_total', help: 'Requests refused, by error code', labelNames: ['code'] as const, registers: [this.registry] })
  readonly cacheHits = new Counter({ name: 'latchkey_cache_hits_total', help: 'Secret lookups served from the cache', labelNames: ['credential'] as const, registers: [this.registry] })
  readonly cacheMisses = new Counter({ name: 'latchkey_cache_misses_total', help: 'Secret lookups that waited for a provider fetch', labelNames: ['credential'] as const, registers: [this.registry] })
  readonly cacheStale = new Counter({ name: 'latchkey_cache_stale_served_total', help: 'Expired values served (within maxStale) because the provider failed or was slower than the stale grace', labelNames: ['credential'] as const, registers: [this.registry] })
  readonly cacheEntries = new Gauge({ name: 'latchkey_cache_entries', help: 'Secrets held in the cache', registers: [this.registry] })
  readonly providerFetches = new Counter({ name: 'latchkey_provider_fetches_total', help: 'Provider calls by provider and result code (ok or an error code)', labelNames: ['provider', 'result'] as const, registers: [this.registry] })
  readonly providerLatency = new Histogram({
    name: 'latchkey_provider_fetch_duration_seconds',
    help: 'Provider call latency',
    labelNames: ['provider'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  })
  readonly providerThrottled = new Counter({ name: 'latchkey_provider_throttled_total', help: 'Provider calls answered with throttling', labelNames: ['provider'] as const, registers: [this.registry] })
  readonly providerRetries = new Counter({ name: 'latchkey_provider_retries_total', help: 'Provider calls repeated after a transient failure', labelNames: ['provider'] as const, registers: [this.registry] })
  readonly busts = new Counter({ name: 'latchkey_busts_total', help: 'Upstream 401/403 answers to injected requests, by result', labelNames: ['credential', 'result'] as const, registers: [this.registry] })
  readonly replays = new Counter({ name: 'latchkey_replays_total', help: 'Requests sent again with a refreshed credential', labelNames: ['credential'] as const, registers: [this.registry] })

  // Label children bound on first use and kept: the request path does no label hashing.
  readonly #requestChildren = new Map<string, Map<string, CounterChild>>()
  readonly #durationChildren = new Map<string, HistogramChild>()
  readonly #denialChildren = new Map<string, CounterChild>()
  readonly #injectionChildren = new Map<string, CounterChild>()

  /** `latchkey_requests_total{mode, outcome}` + 1. */
  countRequest(mode: string, outcome: string): void {
    let byOutcome = this.#requestChildren.get(mode)
    if (byOutcome === undefined) this.#requestChildren.set(mode, (byOutcome = new Map()))
    let child = byOutcome.get(outcome)
    if (child === undefined) byOutcome.set(outcome, (child = this.requests.labels({ mode, outcome })))
    child.inc()
  }

  /** `latchkey_request_duration_seconds{mode}`. */
  observeDuration(mode: string, seconds: number): void {
    let child = this.#durationChildren.get(mode)
    if (child === undefined) this.#durationChildren.set(mode, (child = this.requestDuration.labels({ mode })))
    child.observe(seconds)
  }

  /** `latchkey_denials_total{code}` + 1. */
  countDenial(code: string): void {
    bound(this.#denialChildren, this.denials, 'code', code).inc()
  }

  /** `latchkey_injections_total{credential}` + 1. */
  countInjection(credential: string): void {
    bound(this.#injectionChildren, this.injections, 'credential', credential).inc()
  }

  constructor(options: { processMetrics?: boolean } = {}) {
    // prom-client samples event-loop lag with a 10 ms timer by default: 4 ms of CPU per second in an idle pod.
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'latchkey_', eventLoopMonitoringPrecision: 500 })
  }
}

function bound(children: Map<string, CounterChild>, counter: Counter<string>, label: string, value: string): CounterChild {
  let child = children.get(value)
  if (child === undefined) children.set(value, (child = counter.labels({ [label]: value })))
  return child
}
