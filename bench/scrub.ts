/**
 * The cost of scrubbing the injected value from responses, measured in one run:
 * - the body scrubber alone (`BodyScrubber.push` over 16 KiB and 64 KiB chunks of JSON text
 *   that holds no match, and one that holds the value every 4 KiB) against a passthrough
 *   that only touches each chunk, and a plain copy (`Buffer.from`) as a reference;
 * - the whole handler path: one undici Agent streaming a 64 MiB body from a local server,
 *   without a scrubbing handler (baseline), headers only, headers and body, and a gzip body
 *   decoded and scrubbed.
 *
 * `node bench/scrub.ts` runs it alone; `benchScrub` returns the rows for another runner.
 * Options (env): BENCH_SCRUB_MB (default 256, data per micro row, in three runs), BENCH_SCRUB_BODY_MB (default 64).
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { Agent, type Dispatcher } from 'undici'
import { BodyScrubber, ScrubForms, scrubbingHandler } from '../src/inject/scrub-response.ts'

const MICRO_MB = Number(process.env.BENCH_SCRUB_MB ?? 256)
const BODY_MB = Number(process.env.BENCH_SCRUB_BODY_MB ?? 64)
const VALUE = 'bench-scrub-token-6f1e0a9c2b7d4e53'
const FORMS = new ScrubForms([`Bearer ${VALUE}`, VALUE])

export interface ScrubRow {
  name: string
  mbPerS: number
  ratio: number
}

/** JSON-ish text of `size` bytes; with `every`, the value is written every `every` bytes. */
function corpus(size: number, every?: number): Buffer {
  const line = Buffer.from('{"id":12345,"name":"ordinary record","tags":["a","b","c"],"note":"nothing secret here at all"}\n')
  const out = Buffer.alloc(size)
  for (let at = 0; at < size; at += line.length) line.copy(out, at)
  if (every !== undefined) for (let at = 100; at + VALUE.length < size; at += every) out.write(VALUE, at, 'latin1')
  return out
}

/** MB/s of `step` over `MICRO_MB` of `chunk`s: the best of three runs (the machine may be busy). */
function micro(name: string, chunk: Buffer, step: (c: Buffer) => Buffer): { name: string; mbPerS: number } {
  const rounds = Math.max(1, Math.floor((MICRO_MB * 1024 * 1024) / chunk.length / 3))
  let sink = 0
  for (let i = 0; i < Math.min(rounds, 200); i++) sink += step(chunk).length // warm-up
  let best = 0
  for (let run = 0; run < 3; run++) {
    const started = performance.now()
    for (let i = 0; i < rounds; i++) sink += step(chunk).length
    best = Math.max(best, (rounds * chunk.length) / 1024 / 1024 / ((performance.now() - started) / 1000))
  }
  if (sink < 0) throw new Error('unreachable')
  return { name, mbPerS: best }
}

function microRows(): ScrubRow[] {
  const rows: ScrubRow[] = []
  for (const kib of [16, 64]) {
    const clean = corpus(kib * 1024)
    const dirty = corpus(kib * 1024, 4096)
    // Baseline: a passthrough that copies each chunk once (what a chunk costs to hand on when it is written).
    const base = micro(`passthrough (one copy), ${kib} KiB chunks`, clean, (c) => Buffer.from(c))
    rows.push({ ...base, ratio: 1 })
    const add = (r: { name: string; mbPerS: number }) => rows.push({ ...r, ratio: r.mbPerS / base.mbPerS })
    let n = 0
    const count = (piece: Buffer) => (n += piece.length)
    const s1 = new BodyScrubber(FORMS)
    add(micro(`scrub, no match, ${kib} KiB`, clean, (c) => (s1.push(c, count), c)))
    const s2 = new BodyScrubber(FORMS)
    add(micro(`scrub, a match every 4 KiB, ${kib} KiB`, dirty, (c) => (s2.push(c, count), c)))
  }
  return rows
}

async function handlerRows(): Promise<ScrubRow[]> {
  const chunk = corpus(64 * 1024)
  const total = BODY_MB * 1024 * 1024
  const gz = gzipSync(corpus(total))
  const server = http.createServer((req, res) => {
    if (req.url === '/gzip') {
      res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': gz.length })
      res.end(gz)
      return
    }
    res.writeHead(200, { 'content-length': total, 'x-note': 'plain' })
    let sent = 0
    const write = () => {
      while (sent < total) {
        sent += chunk.length
        if (!res.write(chunk)) return void res.once('drain', write)
      }
      res.end()
    }
    write()
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const agent = new Agent()
  const run = async (path: string, wrap: (h: Dispatcher.DispatchHandler) => Dispatcher.DispatchHandler): Promise<number> => {
    const d = agent.compose((dispatch) => (opts, handler) => dispatch(opts, wrap(handler)))
    const started = performance.now()
    const res = await d.request({ origin, path, method: 'GET' })
    let bytes = 0
    for await (const c of res.body) bytes += (c as Buffer).length
    const seconds = (performance.now() - started) / 1000
    return bytes / 1024 / 1024 / seconds
  }
  const cases = [
    [`handler: no scrubbing, ${BODY_MB} MiB body`, '/', (h: Dispatcher.DispatchHandler) => h],
    ['handler: headers only', '/', (h: Dispatcher.DispatchHandler) => scrubbingHandler(h, FORMS, { bodies: false, method: 'GET' })],
    ['handler: headers + body', '/', (h: Dispatcher.DispatchHandler) => scrubbingHandler(h, FORMS, { bodies: true, method: 'GET' })],
    ['handler: gzip body decoded + scrubbed', '/gzip', (h: Dispatcher.DispatchHandler) => scrubbingHandler(h, FORMS, { bodies: true, method: 'GET' })],
  ] as const
  // Rounds interleave the cases so a busy moment of the machine does not fall on one of them; the best round counts.
  const best = cases.map(() => 0)
  for (let round = 0; round < 5; round++) {
    for (const [i, [, path, wrap]] of cases.entries()) best[i] = Math.max(best[i] ?? 0, await run(path, wrap))
  }
  const base = best[0] ?? 1
  const rows: ScrubRow[] = cases.map(([name], i) => ({ name, mbPerS: best[i] ?? 0, ratio: (best[i] ?? 0) / base }))
  await agent.close()
  await new Promise((r) => server.close(r))
  return rows
}

export async function benchScrub(): Promise<ScrubRow[]> {
  return [...microRows(), ...(await handlerRows())]
}

function print(rows: ScrubRow[]): void {
  const width = Math.max(...rows.map((r) => r.name.length))
  console.log(`| ${'case'.padEnd(width)} |     MB/s | vs baseline |`)
  console.log(`|${'-'.repeat(width + 2)}|---------:|------------:|`)
  for (const r of rows) console.log(`| ${r.name.padEnd(width)} | ${r.mbPerS.toFixed(0).padStart(8)} | ${r.ratio.toFixed(2).padStart(10)}x |`)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) print(await benchScrub())
