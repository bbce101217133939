/**
 * Name resolution for upstream connections that never blocks the shared libuv thread pool.
 *
 * `dns.lookup` (Node's default) runs getaddrinfo on libuv's 4-thread pool: a client asking for
 * names that never resolve fills the pool, and every other lookup, file read and zlib call in
 * the process waits behind them. This resolver asks DNS through c-ares (`dns.promises.Resolver`,
 * non-blocking sockets, no threads) and answers from the system hosts file first, so names
 * there still work. Around it: one query per name at a time (single flight), a positive cache
 * bounded by the answer's TTL, a short negative cache, and a cap on queries in flight, overall
 * and per parent domain, past which a lookup fails at once instead of queueing: one slow name
 * (or a flood of them under one wildcard) never delays another.
 */
import { promises as dnsPromises, type LookupAddress, type LookupOptions, type RecordWithTtl } from 'node:dns'
import { readFileSync } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { isIP } from 'node:net'
import { LRUCache } from 'lru-cache'

/** The two calls used from a c-ares resolver (`dns.promises.Resolver`). */
export interface DnsResolver {
  resolve4(hostname: string, options: { ttl: true }): Promise<RecordWithTtl[]>
  resolve6(hostname: string, options: { ttl: true }): Promise<RecordWithTtl[]>
}

export interface DnsLookupOptions {
  /** Default: a `dns.promises.Resolver` with the system's servers, 2 s per try, 2 tries. */
  resolver?: DnsResolver
  /** Hosts file consulted before DNS (default: the system's); `false` for none. Re-read when it changes. */
  hostsFile?: string | false
  /**
   * Where the `search` domains and `options ndots:N` come from (default `/etc/resolv.conf`; none
   * on Windows); `false` for none. c-ares queries do not apply them, getaddrinfo does, and short
   * names such as Kubernetes' `service.namespace` need them.
   */
  resolvConf?: string | false
  /** Queries in flight at once, all names (default 256). */
  maxInFlight?: number
  /** Queries in flight at once for names under one parent domain (default 32). */
  maxInFlightPerParent?: number
  /** How long a failed name stays failed (default 5 s). */
  negativeTtlMs?: number
  /** Upper bound on the TTL of a cached answer (default 5 min). */
  maxTtlMs?: number
  /** Names remembered, answers and failures together (default 4096). */
  maxEntries?: number
}

/** The callback form `net.connect({ lookup })` and undici's `connect.lookup` expect. */
export type LookupFunction = (
  hostname: string,
  options: LookupOptions,
  callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
) => void

/** A failed lookup; `ENOTFOUND` (the name does not exist) or `EAI_AGAIN` (try again later), as getaddrinfo says. */
export class DnsLookupError extends Error {
  readonly code: 'ENOTFOUND' | 'EAI_AGAIN'
  readonly hostname: string
  readonly syscall = 'queryA'
  constructor(code: 'ENOTFOUND' | 'EAI_AGAIN', hostname: string, why: string) {
    super(`${why} ${hostname}`)
    this.code = code
    this.hostname = hostname
  }
}

type Answer = readonly LookupAddress[] | DnsLookupError

const SYSTEM_HOSTS_FILE = process.platform === 'win32' ? 'C:\\Windows\\System32\\drivers\\etc\\hosts' : '/etc/hosts'
const SYSTEM_RESOLV_CONF = process.platform === 'win32' ? false : '/etc/resolv.conf'
/** How often (at most) the hosts file's mtime is checked; the check runs in the background. */
const HOSTS_RECHECK_MS = 5_000
/** After one family answers, how long to wait for the other (RFC 8305's resolution delay). */
const RESOLUTION_DELAY_MS = 50
const LOOPBACK: readonly LookupAddress[] = Object.freeze([{ address: '127.0.0.1', family: 4 }, { address: '::1', family: 6 }])

/**
 * `/etc/hosts` format: an address, then names, `#` to the end of the line is a comment.
 * Names are lowercased, a trailing dot dropped; the first line for a name wins per family order.
 * (The npm hosts-file packages are editors with CLI dependencies or keep the names of a line
 * as one string; this is the whole format.)
 */
export function parseHostsFile(text: string): Map<string, LookupAddress[]> {
  const out = new Map<string, LookupAddress[]>()
  for (const line of text.split(/\r?\n/)) {
    const fields = line.replace(/#.*/, '').trim().split(/\s+/)
    const address = fields[0]
    const family = address ? isIP(address.replace(/%.*$/, '')) : 0
    if (address === undefined || family === 0) continue
    for (const raw of fields.slice(1)) {
      const name = normalizeName(raw)
      if (name === '') continue
      const list = out.get(name) ?? []
      if (!list.some((a) => a.address === address)) list.push({ address, family })
      out.set(name, list)
    }
  }
  return out
}

/** The `search` list (the last `search` or `domain` line wins) and `ndots` (default 1, at most 15) of resolv.conf. */
export function parseResolvConf(text: string): { search: string[]; ndots: number } {
  let search: string[] = []
  let ndots = 1
  for (const line of text.split(/\r?\n/)) {
    const [key, ...rest] = line.replace(/[#;].*/, '').trim().split(/\s+/)
    if (key === 'search' || key === 'domain') search = rest.map(normalizeName).filter((d) => d !== '')
    else if (key === 'options') {
      for (const o of rest) {
        const m = /^ndots:(\d+)$/.exec(o)
        if (m) ndots = Math.min(15, Number(m[1]))
      }
    }
  }
  return { search, ndots }
}

function normalizeName(name: string): string {
  const lower = name.toLowerCase()
  return lower.endsWith('.') ? lower.slice(0, -1) : lower
}

/** The name without its first label: `nx1.wild.example.com` → `wild.example.com`. Two-label names are their own parent. */
function parentOf(name: string): string {
  const dot = name.indexOf('.')
  return dot === -1 || name.indexOf('.', dot + 1) === -1 ? name : name.slice(dot + 1)
}

export class DnsLookup {
  readonly lookup: LookupFunction
  readonly #resolver: DnsResolver
  readonly #hostsFile: string | false
  readonly #search: readonly string[]
  readonly #ndots: number
  readonly #maxInFlight: number
  readonly #maxPerParent: number
  readonly #negativeTtlMs: number
  readonly #maxTtlMs: number
  readonly #answers: LRUCache<string, Answer>
  readonly #flights = new Map<string, Promise<Answer>>()
  readonly #perParent = new Map<string, number>()
  #hosts = new Map<string, LookupAddress[]>()
  #hostsMtimeMs = -1
  #hostsCheckedAt = 0
  #hostsChecking = false

  constructor(o: DnsLookupOptions = {}) {
    this.#resolver = o.resolver ?? new dnsPromises.Resolver({ timeout: 2_000, tries: 2 })
    this.#hostsFile = o.hostsFile ?? SYSTEM_HOSTS_FILE
    const resolvConf = o.resolvConf ?? SYSTEM_RESOLV_CONF
    let conf = { search: [] as string[], ndots: 1 }
    try {
      if (resolvConf !== false) conf = parseResolvConf(readFileSync(resolvConf, 'utf8'))
    } catch {
      // No resolv.conf: names are asked as they are.
    }
    this.#search = Object.freeze(conf.search)
    this.#ndots = conf.ndots
    this.#maxInFlight = o.maxInFlight ?? 256
    this.#maxPerParent = o.maxInFlightPerParent ?? 32
    this.#negativeTtlMs = o.negativeTtlMs ?? 5_000
    this.#maxTtlMs = o.maxTtlMs ?? 300_000
    this.#answers = new LRUCache<string, Answer>({ max: o.maxEntries ?? 4096, ttlAutopurge: false })
    if (this.#hostsFile !== false) {
      // Once, synchronously, at start: the file is small and every lookup needs it.
      try {
        this.#hostsMtimeMs = 0
        this.#hosts = parseHostsFile(readFileSync(this.#hostsFile, 'utf8'))
      } catch {
        // No hosts file: DNS only.
      }
      this.#hostsCheckedAt = performance.now()
    }
    this.lookup = (hostname, options, callback) => {
      const name = normalizeName(hostname)
      const family = isIP(name)
      const found = family !== 0 ? [{ address: name, family }] : this.#immediate(name)
      if (found !== undefined) return deliver(name, found, options, callback)
      void this.resolve(name).then((answer) => deliver(name, answer, options, callback))
    }
  }

  /** Every address of a name (IPv4 first), or the error; never rejects. */
  resolve(hostname: string): Promise<Answer> {
    const name = normalizeName(hostname)
    const found = isIP(name) !== 0 ? [{ address: name, family: isIP(name) }] : this.#immediate(name)
    if (found !== undefined) return Promise.resolve(found)
    const flying = this.#flights.get(name)
    if (flying !== undefined) return flying
    const parent = parentOf(name)
    const siblings = this.#perParent.get(parent) ?? 0
    if (this.#flights.size >= this.#maxInFlight || siblings >= this.#maxPerParent) {
      return Promise.resolve(new DnsLookupError('EAI_AGAIN', name, 'too many DNS lookups in flight; not resolving'))
    }
    this.#perParent.set(parent, siblings + 1)
    const flight = this.#query(name).then((result) => {
      this.#flights.delete(name)
      const left = (this.#perParent.get(parent) ?? 1) - 1
      if (left === 0) this.#perParent.delete(parent)
      else this.#perParent.set(parent, left)
      const ttl = result.answer instanceof DnsLookupError ? this.#negativeTtlMs : Math.min(result.ttlMs, this.#maxTtlMs)
      if (ttl > 0) this.#answers.set(name, result.answer, { ttl })
      return result.answer
    })
    this.#flights.set(name, flight)
    return flight
  }

  /** Names with a query in flight (for tests and metrics). */
  get inFlight(): number {
    return this.#flights.size
  }

  /** The answer known without a query: hosts file, `localhost`, the caches. */
  #immediate(name: string): Answer | undefined {
    if (this.#hostsFile !== false) {
      this.#maybeReloadHosts()
      const listed = this.#hosts.get(name)
      if (listed !== undefined) return listed
    }
    // RFC 6761: localhost names are loopback, never asked of DNS.
    if (name === 'localhost' || name.endsWith('.localhost')) return LOOPBACK
    return this.#answers.get(name)
  }

  /**
   * The name with the search domains, in resolver(3) order: a name with fewer than `ndots`
   * dots tries the search domains first, then itself; any other, itself first. The first
   * candidate with an address wins; a time-out ends the search (as a failure to retry).
   */
  async #query(name: string): Promise<{ answer: Answer; ttlMs: number }> {
    if (this.#search.length === 0) return this.#queryOne(name)
    const expanded = this.#search.map((d) => `${name}.${d}`)
    const dots = name.split('.').length - 1
    let last: { answer: Answer; ttlMs: number } | undefined
    for (const candidate of dots >= this.#ndots ? [name, ...expanded] : [...expanded, name]) {
      last = await this.#queryOne(candidate)
      if (!(last.answer instanceof DnsLookupError)) return last
      if (last.answer.code === 'EAI_AGAIN') break
    }
    const failed = (last as { answer: DnsLookupError }).answer
    return { answer: new DnsLookupError(failed.code, name, failed.code === 'ENOTFOUND' ? 'no address for' : 'DNS did not answer for'), ttlMs: 0 }
  }

  async #queryOne(name: string): Promise<{ answer: Answer; ttlMs: number }> {
    const v4 = this.#resolver.resolve4(name, { ttl: true })
    const v6 = this.#resolver.resolve6(name, { ttl: true })
    const [a, aaaa] = await settleBoth(v4, v6)
    const records = [...(a.status === 'fulfilled' ? a.value.map((r) => ({ ...r, family: 4 })) : []), ...(aaaa.status === 'fulfilled' ? aaaa.value.map((r) => ({ ...r, family: 6 })) : [])]
    if (records.length > 0) {
      return { answer: records.map((r) => ({ address: r.address, family: r.family })), ttlMs: Math.min(...records.map((r) => r.ttl)) * 1000 }
    }
    const codes = [a, aaaa].map((s) => (s.status === 'rejected' ? (s.reason as { code?: string }).code : 'ENODATA'))
    const missing = codes.every((c) => c === 'ENOTFOUND' || c === 'ENODATA')
    return { answer: new DnsLookupError(missing ? 'ENOTFOUND' : 'EAI_AGAIN', name, missing ? 'no address for' : `DNS did not answer (${codes[0] ?? 'error'}) for`), ttlMs: 0 }
  }

  #maybeReloadHosts(): void {
    const now = performance.now()
    if (this.#hostsChecking || now - this.#hostsCheckedAt < HOSTS_RECHECK_MS || this.#hostsFile === false) return
    this.#hostsChecking = true
    this.#hostsCheckedAt = now
    const file = this.#hostsFile
    stat(file)
      .then(async (s) => {
        if (s.mtimeMs === this.#hostsMtimeMs) return
        const text = await readFile(file, 'utf8')
        this.#hosts = parseHostsFile(text)
        this.#hostsMtimeMs = s.mtimeMs
      })
      .catch(() => undefined) // Unreadable now: keep what was read before.
      .finally(() => {
        this.#hostsChecking = false
      })
  }
}

/**
 * Both families' results; once one has addresses the other gets `RESOLUTION_DELAY_MS` more,
 * so a server that drops AAAA queries does not hold up the A answer until its timeout.
 */
function settleBoth(a: Promise<RecordWithTtl[]>, b: Promise<RecordWithTtl[]>): Promise<[PromiseSettledResult<RecordWithTtl[]>, PromiseSettledResult<RecordWithTtl[]>]> {
  const pending: PromiseSettledResult<RecordWithTtl[]> = { status: 'rejected', reason: { code: 'ETIMEOUT' } }
  const results: [PromiseSettledResult<RecordWithTtl[]> | undefined, PromiseSettledResult<RecordWithTtl[]> | undefined] = [undefined, undefined]
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined
    const done = () => {
      clearTimeout(timer)
      resolve([results[0] ?? pending, results[1] ?? pending])
    }
    const settle = (i: 0 | 1, r: PromiseSettledResult<RecordWithTtl[]>) => {
      results[i] = r
      const other = results[1 - i]
      if (other !== undefined) return done()
      if (r.status === 'fulfilled' && r.value.length > 0 && timer === undefined) timer = setTimeout(done, RESOLUTION_DELAY_MS).unref()
    }
    a.then((value) => settle(0, { status: 'fulfilled', value }), (reason: unknown) => settle(0, { status: 'rejected', reason }))
    b.then((value) => settle(1, { status: 'fulfilled', value }), (reason: unknown) => settle(1, { status: 'rejected', reason }))
  })
}

function deliver(name: string, answer: Answer, options: LookupOptions, callback: Parameters<LookupFunction>[2]): void {
  if (answer instanceof DnsLookupError) return callback(answer, options.all ? [] : '')
  const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : options.family
  const list = family === 4 || family === 6 ? answer.filter((a) => a.family === family) : answer
  if (list.length === 0) return callback(new DnsLookupError('ENOTFOUND', name, `no IPv${String(family)} address for`), options.all ? [] : '')
  if (options.all) return callback(null, list.map((a) => ({ address: a.address, family: a.family })))
  const first = list[0] as LookupAddress
  callback(null, first.address, first.family)
}

let shared: DnsLookup | undefined

/** The process's resolver with default settings, created on first use (one cache for all agents and tunnels). */
export const systemLookup: LookupFunction = (hostname, options, callback) => {
  shared ??= new DnsLookup()
  shared.lookup(hostname, options, callback)
}
