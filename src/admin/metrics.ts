import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

type CounterChild = ReturnType<Counter<string>['labels']>

/** One labelled count that the request path adds to as a plain number. */
interface Cell {
  readonly labels: Record<string, string>
  n: number
}

/**
 * Counts by one or two label values, kept as plain numbers: an increment on the request path
 * is a map lookup or two and an addition. prom-client reads them only when `/metrics` is
 * scraped (its counters cost a label hash and validation per increment, a few per request).
 */
class Cells {
  readonly #byFirst = new Map<string, Map<string, Cell>>()
  readonly all: Cell[] = []
  readonly names: readonly [string] | readonly [string, string]

  constructor(names: readonly [string] | readonly [string, string]) {
    this.names = names
  }

  /** `b` is the second label's value; with one label it is left out. */
  add(a: string, b = '', n = 1): void {
    let byB = this.#byFirst.get(a)
    if (byB === undefined) this.#byFirst.set(a, (byB = new Map()))
    let cell = byB.get(b)
    if (cell === undefined) {
      const [first, second] = this.names
      byB.set(b, (cell = { labels: second === undefined ? { [first]: a } : { [first]: a, [second]: b }, n: 0 }))
      this.all.push(cell)
    }
    cell.n += n
  }
}

/** A prom-client counter whose values are copied from `cells` at scrape time. */
function scrapedCounter(registry: Registry, name: string, help: string, cells: Cells): Counter<string> {
  return new Counter({
    name,
    help,
    labelNames: cells.names,
    registers: [registry],
    collect() {
      this.reset()
      for (const c of cells.all) this.inc(c.labels, c.n)
    },
  })
}

/**
 * A histogram with one label, counted in plain arrays and exposed through prom-client's
 * registry in its own format (`_bucket` with `le`, `_sum`, `_count`) when scraped.
 */
class PlainHistogram {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly #series = new Map<string, { counts: number[]; sum: number; count: number }>()

  readonly name: string
  readonly help: string
  readonly label: string
  readonly buckets: readonly number[]

  constructor(name: string, help: string, label: string, buckets: readonly number[]) {
    this.name = name
    this.help = help
    this.label = label
    this.buckets = buckets
  }

  observe(value: string, x: number): void {
    let s = this.#series.get(value)
    if (s === undefined) this.#series.set(value, (s = { counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 }))
    const b = this.buckets
    let i = 0
    while (i < b.length && x > b[i]!) i++
    s.counts[i]!++
    s.sum += x
    s.count++
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: { labels: Record<string, string | number>; value: number; metricName: string }[] } {
    const values = []
    for (const [v, s] of this.#series) {
      let cumulative = 0
      for (let i = 0; i <= this.buckets.length; i++) {
        cumulative += s.counts[i]!
        values.push({ labels: { le: i < this.buckets.length ? this.buckets[i]! : '+Inf', [this.label]: v }, value: cumulative, metricName: `${this.name}_bucket` })
      }
      values.push({ labels: { [this.label]: v }, value: s.sum, metricName: `${this.name}_sum` }, { labels: { [this.label]: v }, value: s.count, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset(): void {
    this.#series.clear()
  }
}

/**
 * Every metric latchkey exports, on its own registry (never the global one, so an
 * embedding app's metrics and ours do not collide). Names are prefixed `latchkey_`.
 * Label values are config names and fixed outcome words — never hosts from requests
 * (unbounded) and never secret material.
 */
export class Metrics {
  readonly registry = new Registry()
  // Counted in plain numbers; their prom-client counters are made in the constructor and held
  // only by the registry, so nothing can increment them directly.
  readonly #requestCells = new Cells(['mode', 'outcome'])
  readonly #requestDuration = new PlainHistogram(
    'latchkey_request_duration_seconds',
    'Time from request received to response headers sent',
    'mode',
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  )
  readonly injections = new Counter({ name: 'latchkey_injections_total', help: 'Requests a credential was injected into', labelNames: ['credential'] as const, registers: [this.registry] })
  readonly denials = new Counter({ name: 'latchkey_denials_total', help: 'Requests refused, by error code', labelNames: ['code'] as const, registers: [this.registry] })
  readonly #hitCells = new Cells(['credential'])
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
  readonly #credentialCells = new Cells(['credential', 'outcome'])
  readonly replays = new Counter({ name: 'latchkey_replays_total', help: 'Requests sent again with a refreshed credential', labelNames: ['credential'] as const, registers: [this.registry] })

  // Label children bound on first use and kept: no label hashing for these either.
  readonly #denialChildren = new Map<string, CounterChild>()
  readonly #injectionChildren = new Map<string, CounterChild>()

  /** `latchkey_requests_total{mode, outcome}` + 1. */
  countRequest(mode: string, outcome: string): void {
    this.#requestCells.add(mode, outcome)
  }

  /** `latchkey_request_duration_seconds{mode}`. */
  observeDuration(mode: string, seconds: number): void {
    this.#requestDuration.observe(mode, seconds)
  }

  /** `latchkey_cache_hits_total{credential}` + `n` (0 shows the series before the first hit). */
  countCacheHit(credential: string, n = 1): void {
    this.#hitCells.add(credential, '', n)
  }

  /** `latchkey_denials_total{code}` + 1. */
  countDenial(code: string): void {
    bound(this.#denialChildren, this.denials, 'code', code).inc()
  }

  /** `latchkey_injections_total{credential}` + 1. */
  countInjection(credential: string): void {
    bound(this.#injectionChildren, this.injections, 'credential', credential).inc()
  }

  /** `latchkey_credential_requests_total{credential, outcome}` + 1: credential names come from the config, outcomes from a fixed set. */
  countCredentialUse(credential: string, outcome: string): void {
    this.#credentialCells.add(credential, outcome)
  }

  constructor(options: { processMetrics?: boolean } = {}) {
    // prom-client samples event-loop lag with a 10 ms timer by default: 4 ms of CPU per second in an
    // idle pod. Every wake-up of an idle process costs ~0.1 ms, so one sample each 2 s.
    scrapedCounter(this.registry, 'latchkey_requests_total', 'Proxied requests by mode and outcome', this.#requestCells)
    scrapedCounter(this.registry, 'latchkey_cache_hits_total', 'Secret lookups served from the cache', this.#hitCells)
    scrapedCounter(this.registry, 'latchkey_credential_requests_total', "Requests to a credential's hosts by credential and outcome (injected, replayed, client_header_kept, refused, error)", this.#credentialCells)
    this.registry.registerMetric(this.#requestDuration as unknown as Histogram)
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'latchkey_', eventLoopMonitoringPrecision: 2000 })
  }
}

function bound(children: Map<string, CounterChild>, counter: Counter<string>, label: string, value: string): CounterChild {
  let child = children.get(value)
  if (child === undefined) children.set(value, (child = counter.labels({ [label]: value })))
  return child
}
