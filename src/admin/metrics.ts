import { createRequire } from 'node:module'
import type { Histogram, Registry } from 'prom-client'

type Prom = typeof import('prom-client')

/** One labelled count that the request path adds to as a plain number. */
interface Cell {
  readonly labels: Record<string, string>
  n: number
}

/**
 * Counts by one or two label values, kept as plain numbers: an increment is a map lookup or
 * two and an addition. prom-client reads them only when `/metrics` is scraped (its counters
 * cost a label hash and validation per increment).
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

/** A counter by one or two labels, counted in plain numbers and handed to prom-client at scrape time. */
export class PlainCounter {
  readonly name: string
  readonly help: string
  readonly cells: Cells

  constructor(name: string, help: string, labels: readonly [string] | readonly [string, string]) {
    this.name = name
    this.help = help
    this.cells = new Cells(labels)
  }

  /** `+ n` for these label values. */
  inc(labels: Readonly<Record<string, string>>, n = 1): void {
    const [first, second] = this.cells.names
    this.cells.add(labels[first] ?? '', second === undefined ? '' : (labels[second] ?? ''), n)
  }
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

  /** Seconds from now until the returned function is called, observed for `labels[label]`. */
  startTimer(labels: Readonly<Record<string, string>>): () => void {
    const started = performance.now()
    return () => this.observe(labels[this.label] ?? '', (performance.now() - started) / 1000)
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

/** A value set as a plain number, read at scrape time. */
class PlainGauge {
  value = 0
  set(n: number): void {
    this.value = n
  }
}

/**
 * Every metric latchkey exports, on its own registry (never the global one, so an embedding
 * app's metrics and ours do not collide). Names are prefixed `latchkey_`. Label values are
 * config names and fixed outcome words — never hosts from requests (unbounded) and never
 * secret material.
 *
 * Everything is counted in plain numbers. prom-client, which costs 40–60 ms of start-up to
 * load, is loaded with the registry: on the first scrape, not at start. Node's process
 * metrics (CPU, heap, GC, event-loop lag) are collected from then on.
 */
export class Metrics {
  readonly #requests = new PlainCounter('latchkey_requests_total', 'Proxied requests by mode and outcome', ['mode', 'outcome'])
  readonly #requestDuration = new PlainHistogram(
    'latchkey_request_duration_seconds',
    'Time from request received to response headers sent',
    'mode',
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  )
  readonly injections = new PlainCounter('latchkey_injections_total', 'Requests a credential was injected into', ['credential'])
  readonly denials = new PlainCounter('latchkey_denials_total', 'Requests refused, by error code', ['code'])
  readonly #hits = new PlainCounter('latchkey_cache_hits_total', 'Secret lookups served from the cache', ['credential'])
  readonly cacheMisses = new PlainCounter('latchkey_cache_misses_total', 'Secret lookups that waited for a provider fetch', ['credential'])
  readonly cacheStale = new PlainCounter('latchkey_cache_stale_served_total', 'Expired values served (within maxStale) because the provider failed or was slower than the stale grace', ['credential'])
  readonly cacheEntries = new PlainGauge()
  readonly providerFetches = new PlainCounter('latchkey_provider_fetches_total', 'Provider calls by provider and result code (ok or an error code)', ['provider', 'result'])
  readonly providerLatency = new PlainHistogram('latchkey_provider_fetch_duration_seconds', 'Provider call latency', 'provider', [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])
  readonly providerThrottled = new PlainCounter('latchkey_provider_throttled_total', 'Provider calls answered with throttling', ['provider'])
  readonly providerRetries = new PlainCounter('latchkey_provider_retries_total', 'Provider calls repeated after a transient failure', ['provider'])
  readonly busts = new PlainCounter('latchkey_busts_total', 'Upstream 401/403 answers to injected requests, by result', ['credential', 'result'])
  readonly #credentialUses = new PlainCounter('latchkey_credential_requests_total', "Requests to a credential's hosts by credential and outcome (injected, replayed, client_header_kept, refused, error)", ['credential', 'outcome'])
  readonly replays = new PlainCounter('latchkey_replays_total', 'Requests sent again with a refreshed credential', ['credential'])

  readonly #processMetrics: boolean
  #registry: Registry | undefined

  constructor(options: { processMetrics?: boolean } = {}) {
    this.#processMetrics = options.processMetrics !== false
  }

  /** `latchkey_requests_total{mode, outcome}` + 1. */
  countRequest(mode: string, outcome: string): void {
    this.#requests.cells.add(mode, outcome)
  }

  /** `latchkey_request_duration_seconds{mode}`. */
  observeDuration(mode: string, seconds: number): void {
    this.#requestDuration.observe(mode, seconds)
  }

  /** `latchkey_cache_hits_total{credential}` + `n` (0 shows the series before the first hit). */
  countCacheHit(credential: string, n = 1): void {
    this.#hits.cells.add(credential, '', n)
  }

  /** `latchkey_denials_total{code}` + 1. */
  countDenial(code: string): void {
    this.denials.cells.add(code)
  }

  /** `latchkey_injections_total{credential}` + 1. */
  countInjection(credential: string): void {
    this.injections.cells.add(credential)
  }

  /** `latchkey_credential_requests_total{credential, outcome}` + 1: credential names come from the config, outcomes from a fixed set. */
  countCredentialUse(credential: string, outcome: string): void {
    this.#credentialUses.cells.add(credential, outcome)
  }

  /** The prom-client registry that exposes these counts, made (and prom-client loaded) on first use. */
  get registry(): Registry {
    if (this.#registry === undefined) this.#registry = this.#makeRegistry(createRequire(import.meta.url)('prom-client') as Prom)
    return this.#registry
  }

  #makeRegistry(prom: Prom): Registry {
    const registry = new prom.Registry()
    const counters = [this.injections, this.denials, this.cacheMisses, this.cacheStale, this.providerFetches, this.providerThrottled, this.providerRetries, this.busts, this.replays, this.#requests, this.#hits, this.#credentialUses]
    for (const c of counters) {
      new prom.Counter({
        name: c.name,
        help: c.help,
        labelNames: c.cells.names,
        registers: [registry],
        collect() {
          this.reset()
          for (const cell of c.cells.all) this.inc(cell.labels, cell.n)
        },
      })
    }
    const entries = this.cacheEntries
    new prom.Gauge({
      name: 'latchkey_cache_entries',
      help: 'Secrets held in the cache',
      registers: [registry],
      collect() {
        this.set(entries.value)
      },
    })
    registry.registerMetric(this.providerLatency as unknown as Histogram)
    registry.registerMetric(this.#requestDuration as unknown as Histogram)
    // prom-client samples event-loop lag with a 10 ms timer by default: 4 ms of CPU per second in an
    // idle pod. Every wake-up of an idle process costs ~0.1 ms, so one sample each 2 s.
    if (this.#processMetrics) prom.collectDefaultMetrics({ register: registry, prefix: 'latchkey_', eventLoopMonitoringPrecision: 2000 })
    return registry
  }
}
