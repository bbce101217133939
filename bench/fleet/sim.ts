import pino from 'pino'
import { fetchWithRetry, SharedThrottle, type RetryPolicy } from '../../src/cache/fetch-with-retry.ts'
import { SecretCache } from '../../src/cache/secret-cache.ts'
import type { CompiledCredential } from '../../src/config/load.ts'
import { SimulatedSecretManager, type SecretManagerModel } from './secret-manager.ts'
import { VirtualClock } from './virtual-clock.ts'
import { bearerCredential } from '../../test/helpers/bearer-credential.ts'

/** One fleet run: N pods × M credentials against one secret manager, on a virtual clock. */
export interface FleetScenario {
  pods: number
  credentials: number
  ttlMs: number
  maxStaleMs: number
  bustCooldownMs: number
  refreshAhead: number
  /** Pods start uniformly over this window from t = 0. */
  rolloutMs: number
  /** Mean time between two requests of one pod (Poisson), each on a random credential. */
  requestIntervalMs: number
  durationMs: number
  /** Kubelet's readiness probe period: readiness is sampled at this pace. */
  probePeriodMs: number
  secretManager: SecretManagerModel
  /** At `at`, credential 0 rotates: the upstream refuses the old value at once and every pod sends it a request within `spreadMs`. */
  rotation?: { at: number; spreadMs: number }
  /** The spans reported, each its own row. */
  windows: ReadonlyArray<{ name: string; from: number; to: number }>
  seed?: number
}

export interface WindowReport {
  name: string
  from: number
  to: number
  callsMean: number
  callsPeak: number
  peakOverMean: number
  throttled: number
  /** Pods that were unready at some probe in the window (after their first ready, or not yet ready at its end). */
  podsUnready: number
  /** Longest unready spell of one pod within the window (after its first ready), in ms. */
  longestUnreadyMs: number
  /** Start to first ready: the slowest pod that started in the window (ms). */
  slowestStartMs: number
  requests: number
  requestsFailed: number
  staleServed: number
  /** Log lines at info and above, per pod. */
  logLinesPerPod: number
  /** Most provider calls one pod made for the rotated credential within one bustCooldown after the rotation. */
  maxRefetchPerPodPerCooldown: number
}

export interface FleetResult {
  /** Provider calls in each second of the run. */
  callsPerSecond: number[]
  windows: WindowReport[]
}

/** The daemon's retry policy with its defaults (fetchTimeout 10 s, fetchAttempts 3, requestTimeout 60 s). */
const REQUEST_BATCH_MS = 100

const POLICY: RetryPolicy = { attempts: 3, timeoutMs: 10_000, baseDelayMs: 200, maxDelayMs: 5000, deadlineMs: 60_000 }

interface Pod {
  readonly id: number
  readonly startedAt: number
  readonly cache: SecretCache
  readyAt: number | undefined
  unreadySince: number | undefined
  rotatedCalls: number
}

const credential = (j: number, ttlMs: number): CompiledCredential => bearerCredential(`cred-${j}`, ttlMs, 'sm')

/** Run one scenario to its end and report its windows. Everything runs on the virtual clock: no real timer, no socket. */
export async function runFleet(s: FleetScenario): Promise<FleetResult> {
  const clock = new VirtualClock(0, s.seed ?? 1)
  const sm = new SimulatedSecretManager(clock, s.secretManager)
  const credentials = Array.from({ length: s.credentials }, (_, j) => credential(j, s.ttlMs))
  const rotated = credentials[0] as CompiledCredential
  const logAt: number[] = []
  // One logger for the fleet, at the daemon's default level, counting the lines each second.
  const logger = pino({ level: 'info' }, { write: () => void logAt.push(clock.now()) })
  const pods: Pod[] = []
  const requestsAt: number[] = []
  const failedAt: number[] = []
  const staleAt: number[] = []
  const unreadySpells: Array<{ pod: number; from: number; to: number }> = []
  const starts: Array<{ at: number; readyMs: number }> = []
  const rotationWindow = s.rotation ? { from: s.rotation.at, to: s.rotation.at + s.bustCooldownMs } : undefined

  const startPod = (id: number) => {
    const throttle = new SharedThrottle()
    const pod: Pod = {
      id,
      startedAt: clock.now(),
      readyAt: undefined,
      unreadySince: undefined,
      rotatedCalls: 0,
      cache: undefined as unknown as SecretCache,
    }
    const provider = sm.provider((ref) => {
      const now = clock.now()
      if (rotationWindow && ref === rotated.ref && now >= rotationWindow.from && now < rotationWindow.to) pod.rotatedCalls++
    })
    ;(pod as { cache: SecretCache }).cache = new SecretCache({
      maxEntries: s.credentials,
      maxStaleMs: s.maxStaleMs,
      bustCooldownMs: s.bustCooldownMs,
      refreshAhead: s.refreshAhead,
      logger,
      clock,
      fetch: (c) => fetchWithRetry(provider, c.ref, c.version, POLICY, undefined, {}, clock, throttle),
    })
    pods.push(pod)
    for (const c of credentials) void pod.cache.keep(c)
  }

  const request = async (pod: Pod, c: CompiledCredential) => {
    requestsAt.push(clock.now())
    try {
      const r = await pod.cache.get(c)
      if (r.stale) staleAt.push(clock.now())
      // The upstream takes only the current generation of a rotated secret: anything older is a 401.
      if (Number(r.secret.version) < sm.generation(c.ref)) {
        const fresh = await pod.cache.bust(c, r.secret)
        if (fresh === undefined || Number(fresh.secret.version) < sm.generation(c.ref)) failedAt.push(clock.now())
      }
    } catch {
      failedAt.push(clock.now())
    }
  }

  for (let i = 0; i < s.pods; i++) clock.setTimeout(() => startPod(i), clock.random() * s.rolloutMs)

  // Requests: one Poisson stream for the fleet, each arrival on a random started pod and
  // credential. Arrivals are started in 100 ms batches: one clock event per batch, not per request.
  const meanGapMs = s.requestIntervalMs / s.pods
  let nextArrival = -Math.log(1 - clock.random()) * meanGapMs
  const requestBatch = () => {
    const until = clock.now() + REQUEST_BATCH_MS
    for (; nextArrival < until; nextArrival += -Math.log(1 - clock.random()) * meanGapMs) {
      const pod = pods[Math.floor(clock.random() * pods.length)]
      if (pod !== undefined) void request(pod, credentials[Math.floor(clock.random() * credentials.length)] as CompiledCredential)
    }
    clock.setTimeout(requestBatch, REQUEST_BATCH_MS)
  }
  clock.setTimeout(requestBatch, 0)

  const probe = () => {
    const now = clock.now()
    for (const pod of pods) {
      const ready = pod.cache.unready(credentials).length === 0
      if (ready && pod.readyAt === undefined) {
        pod.readyAt = now
        starts.push({ at: pod.startedAt, readyMs: now - pod.startedAt })
      }
      if (pod.readyAt === undefined) continue
      if (!ready && pod.unreadySince === undefined) pod.unreadySince = now
      if (ready && pod.unreadySince !== undefined) {
        unreadySpells.push({ pod: pod.id, from: pod.unreadySince, to: now })
        pod.unreadySince = undefined
      }
    }
    clock.setTimeout(probe, s.probePeriodMs)
  }
  clock.setTimeout(probe, s.probePeriodMs)

  if (s.rotation) {
    const { at, spreadMs } = s.rotation
    clock.setTimeout(() => {
      sm.rotate(rotated.ref)
      for (const pod of pods) clock.setTimeout(() => void request(pod, rotated), clock.random() * spreadMs)
    }, at)
  }

  await clock.runUntil(s.durationMs)
  const end = clock.now()
  for (const pod of pods) {
    if (pod.unreadySince !== undefined) unreadySpells.push({ pod: pod.id, from: pod.unreadySince, to: end })
    pod.cache.close()
  }
  const notReadyAtEnd = pods.filter((p) => p.readyAt === undefined)

  const callsPerSecond = Array.from({ length: Math.ceil(s.durationMs / 1000) }, (_, i) => sm.calls[i] ?? 0)
  const count = (a: number[], from: number, to: number) => a.filter((t) => t >= from && t < to).length
  const windows = s.windows.map((w): WindowReport => {
    const secs = callsPerSecond.slice(Math.floor(w.from / 1000), Math.ceil(w.to / 1000))
    const total = secs.reduce((a, b) => a + b, 0)
    const mean = total / Math.max(1, secs.length)
    const peak = max(secs)
    const spells = unreadySpells.filter((u) => u.to > w.from && u.from < w.to)
    const unreadyPods = new Set(spells.map((u) => u.pod))
    for (const p of notReadyAtEnd) if (p.startedAt < w.to) unreadyPods.add(p.id)
    const startsIn = starts.filter((x) => x.at >= w.from && x.at < w.to)
    const throttled = sm.throttledCalls.slice(Math.floor(w.from / 1000), Math.ceil(w.to / 1000)).reduce((a, b) => a + (b ?? 0), 0)
    return {
      name: w.name,
      from: w.from,
      to: w.to,
      callsMean: mean,
      callsPeak: peak,
      peakOverMean: mean === 0 ? 0 : peak / mean,
      throttled,
      podsUnready: unreadyPods.size,
      longestUnreadyMs: max(spells.map((u) => Math.min(u.to, w.to) - Math.max(u.from, w.from))),
      slowestStartMs: max(startsIn.map((x) => x.readyMs)),
      requests: count(requestsAt, w.from, w.to),
      requestsFailed: count(failedAt, w.from, w.to),
      staleServed: count(staleAt, w.from, w.to),
      logLinesPerPod: count(logAt, w.from, w.to) / s.pods,
      maxRefetchPerPodPerCooldown: rotationWindow && w.from <= rotationWindow.from && w.to >= rotationWindow.to ? max(pods.map((p) => p.rotatedCalls)) : 0,
    }
  })
  return { callsPerSecond, windows }
}

/** The largest of `a`, 0 when empty (no spread: `a` may be long). */
function max(a: readonly number[]): number {
  let m = 0
  for (const x of a) if (x > m) m = x
  return m
}
