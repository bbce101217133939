/**
 * The cost of the per-request log line alone: `writeRecord` through the project's logger
 * (structure layer, pino serialisation, scrubber, patterns) into a sink that drops the bytes,
 * against the same object through a bare pino with no redaction, and the redaction layers
 * alone on a finished line. `node bench/log-line.ts` prints ns per line (best of 5 runs).
 */
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { createLogger } from '../src/redact/logger.ts'
import { scrubPatterns } from '../src/redact/patterns.ts'
import { Scrubber } from '../src/redact/scrubber.ts'
import { writeRecord, type Exchange } from '../src/observe/request-record.ts'
import type { Metrics } from '../src/admin/metrics.ts'

const N = Number(process.env.BENCH_LOG_LINES ?? 200_000)
const sink = () => new Writable({ write: (_c, _e, cb) => cb() })
const scrubber = new Scrubber()
scrubber.set('bench', ['bench-token-value-0123456789', 'Bearer bench-token-value-0123456789'])
const logger = createLogger({ level: 'info', scrubber, destination: sink() })
const bare = pino({ level: 'info', base: { name: 'latchkey' }, timestamp: pino.stdTimeFunctions.isoTime }, sink())
const metrics = { countRequest() {}, observeDuration() {}, countDenial() {}, countCredentialUse() {} } as unknown as Metrics
const ex: Exchange = { mode: 'route', credentialName: 'bench', host: '127.0.0.1:8080', route: 'up', method: 'GET', path: '/some/path?x=1', started: performance.now(), outcome: 'injected', status: 200, failure: undefined, provider: 'dev', rule: undefined, secret: undefined, bytesIn: 0, bytesOut: 0, traceparent: undefined }
let line = ''
const capture = pino({ level: 'info', base: { name: 'latchkey' }, timestamp: pino.stdTimeFunctions.isoTime }, new Writable({ write: (c, _e, cb) => { line = String(c); cb() } }))
capture.info({ event: 'request', mode: 'route', method: 'GET', credential: 'bench', route: 'up', host: '127.0.0.1:8080', path: '/some/path', status: 200, durationMs: 1.2, outcome: 'injected' }, 'request')

const rows: Array<[string, () => unknown]> = [
  ['writeRecord (project logger)', () => writeRecord({ logger, metrics }, ex)],
  ['bare pino, same object', () => bare.info({ event: 'request', mode: ex.mode, method: ex.method, credential: ex.credentialName, route: ex.route, host: ex.host, path: '/some/path', status: 200, durationMs: 1.2, outcome: ex.outcome, code: undefined }, 'request')],
  ['scrubber.scrub (finished line)', () => scrubber.scrub(line)],
  ['scrubPatterns (finished line)', () => scrubPatterns(line)],
]
// Rows in alternating rounds, the best of each kept: a busy machine slows some rounds.
const best = rows.map(() => Infinity)
for (let round = 0; round < 5; round++) {
  rows.forEach(([, fn], i) => {
    if (round === 0) for (let j = 0; j < N / 4; j++) fn()
    const t = performance.now()
    for (let j = 0; j < N / 5; j++) fn()
    best[i] = Math.min(best[i]!, ((performance.now() - t) * 1e6) / (N / 5))
  })
}
rows.forEach(([name], i) => console.log(`${name.padEnd(40)} ${best[i]!.toFixed(0).padStart(6)} ns/line`))
