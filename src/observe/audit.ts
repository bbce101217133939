import { chmodSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import type { Writable } from 'node:stream'
import { ConfigError } from '../errors.ts'

/**
 * The audit record: one line per credentialed request and per refusal, on a sink of its own
 * (not the log, whose level an operator turns down). It holds no value and no query string:
 * the value is identified by its fingerprint and the provider's version, the path is the
 * normalised path latchkey matched and sent. Its fields from outside latchkey still go through
 * the scrubber, so a secret a client put into a path is hidden like everywhere else.
 */
/** `client_header_kept`: the client sent its own header and the credential's `overwrite` is false, so nothing was injected. */
export type AuditOutcome = 'injected' | 'replayed' | 'refused' | 'error' | 'client_header_kept'

export interface AuditRecord {
  credential: string | undefined
  provider: string | undefined
  /** The provider's version id of the value sent, where it has one. */
  version: string | undefined
  /** `sha256:` + 8 hex of the value sent. */
  fingerprint: string | undefined
  host: string
  port: number
  method: string
  /** Normalised path, never the query. */
  path: string
  /** Index of the `allow` rule that allowed the request, when the credential has rules. */
  rule: number | undefined
  status: number
  outcome: AuditOutcome
  /** Registry code of a refusal or failure. */
  code: string | undefined
  durationMs: number
  bytesIn: number
  bytesOut: number
  /** W3C trace context, kept only when it is well-formed. */
  traceparent: string | undefined
}

export interface AuditOptions {
  /** `stdout`: lines on the process's stdout marked `"audit":true`; `file`: a rotated file of its own. */
  sink: 'stdout' | 'file'
  file?: string | undefined
  /** Bytes before the file is rotated. */
  maxSize?: number
  /** Rotated files kept besides the current one. */
  keep?: number
  /** Fraction of `injected` records written (refusals, errors and replays are always written). */
  sampling: number
}

export interface AuditSink {
  write(record: AuditRecord): void
  close(): Promise<void>
}

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/

/** The `traceparent` header if it is well-formed (W3C Trace Context), else undefined: nothing else from the client is copied. */
export function wellFormedTraceparent(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' && TRACEPARENT.test(value) ? value : undefined
}

/**
 * One record as a JSON line, keys in a fixed order (the line's shape is stable for whoever
 * parses it), absent fields left out as JSON.stringify would. Written out by hand: the
 * generic JSON.stringify of a fresh object per request was most of the audit record's cost.
 * `scrub` runs over each text field but the registry's words and the fingerprint: over short
 * fields, not the whole line, which costs a fraction.
 */
export function auditLine(r: AuditRecord, scrub: (text: string) => string): string {
  let s = '{"audit":true,"time":"' + isoNow() + '"'
  if (r.credential !== undefined) s += ',"credential":' + JSON.stringify(scrub(r.credential))
  if (r.provider !== undefined) s += ',"provider":' + JSON.stringify(scrub(r.provider))
  if (r.version !== undefined) s += ',"version":' + JSON.stringify(scrub(r.version))
  if (r.fingerprint !== undefined) s += ',"fingerprint":' + JSON.stringify(r.fingerprint)
  s += ',"host":' + JSON.stringify(scrub(r.host)) + ',"port":' + num(r.port) + ',"method":' + JSON.stringify(scrub(r.method)) + ',"path":' + JSON.stringify(scrub(r.path))
  if (r.rule !== undefined) s += ',"rule":' + num(r.rule)
  s += ',"status":' + num(r.status) + ',"outcome":"' + r.outcome + '"'
  if (r.code !== undefined) s += ',"code":"' + r.code + '"'
  s += ',"durationMs":' + num(r.durationMs) + ',"bytesIn":' + num(r.bytesIn) + ',"bytesOut":' + num(r.bytesOut)
  if (r.traceparent !== undefined) s += ',"traceparent":' + JSON.stringify(scrub(r.traceparent))
  return s + '}'
}

let lastMs = 0
let lastIso = ''
/** The current time as ISO 8601, formatted once per millisecond (many records share one). */
function isoNow(): string {
  const ms = Date.now()
  if (ms !== lastMs) {
    lastMs = ms
    lastIso = new Date(ms).toISOString()
  }
  return lastIso
}

/** A number as JSON writes it (NaN and infinities are null). */
function num(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null'
}

export interface AuditDeps {
  scrub(text: string): string
  stdout: Writable
  /** A write or rotation failure after start: reported, never fatal to the request path. */
  onError(err: Error): void
  random?: () => number
}

export async function createAuditSink(opts: AuditOptions, deps: AuditDeps): Promise<AuditSink> {
  const out = opts.sink === 'file' ? await openRotatingFile(opts, deps.onError) : deps.stdout
  const random = deps.random ?? Math.random
  const sampling = opts.sampling
  // On stdout, the records of one turn of the event loop go out in one write: a write per
  // request was a system call per request, the largest cost of the audit record.
  let pending = ''
  let scheduled = false
  const flush = (): void => {
    scheduled = false
    if (pending === '') return
    const chunk = pending
    pending = ''
    out.write(chunk)
  }
  return {
    write(r) {
      if (r.outcome === 'injected' && sampling < 1 && random() >= sampling) return
      const line = auditLine(r, deps.scrub)
      // A rotating file buffers on its own and rotates between writes; stdout writes at once.
      if (out !== deps.stdout) {
        out.write(line + '\n')
        return
      }
      pending += line + '\n'
      if (!scheduled) {
        scheduled = true
        setImmediate(flush)
      }
    },
    close() {
      flush()
      if (out === deps.stdout) return Promise.resolve()
      return new Promise((resolve) => out.end(() => resolve()))
    },
  }
}

async function openRotatingFile(opts: AuditOptions, onError: (err: Error) => void): Promise<Writable> {
  if (!opts.file) throw new Error('audit.file is required when audit.sink is file')
  const { createStream } = await import('rotating-file-stream')
  const file = path.resolve(opts.file)
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  // Classic rotation (file, file.1, ... file.N): the set of files on disk is bounded by `keep`.
  const stream = createStream(path.basename(file), {
    path: path.dirname(file),
    size: `${Math.max(1, Math.ceil((opts.maxSize ?? 10 * 1024 * 1024) / 1024))}K`,
    rotate: opts.keep ?? 5,
    mode: 0o600,
  })
  await new Promise<void>((resolve, reject) => {
    stream.once('open', () => resolve())
    stream.once('error', reject)
  })
  // `mode` applies when the file is created; one left by an earlier run is narrowed too.
  chmodSync(file, 0o600)
  stream.on('error', onError)
  return stream
}

/** The `audit` section of a compiled config. */
export interface AuditConfig extends Omit<AuditOptions, 'file'> {
  readonly enabled: boolean
  readonly file?: string | undefined
}

/**
 * The configured sink, or undefined when audit is off. A file that cannot be opened is a
 * configuration problem named by its key (the daemon fails to start with it).
 */
export async function openConfiguredAudit(a: AuditConfig, deps: AuditDeps): Promise<AuditSink | undefined> {
  if (!a.enabled) return undefined
  try {
    return await createAuditSink({ sink: a.sink, file: a.file, maxSize: a.maxSize, keep: a.keep, sampling: a.sampling }, deps)
  } catch (err) {
    throw new ConfigError([{ path: 'audit.file', message: `cannot open the audit file ${a.file ?? '(unset)'}: ${(err as Error).message}` }])
  }
}

/**
 * A sink usable at once while the real one opens (the in-process shim starts synchronously):
 * records written before it is open are queued in order; if it fails to open they are dropped
 * (`onError` was told).
 */
export function deferredAuditSink(opening: Promise<AuditSink | undefined>, onError: (err: Error) => void): AuditSink {
  let sink: AuditSink | undefined
  let queue: AuditRecord[] | undefined = []
  opening.then(
    (s) => {
      sink = s
      for (const r of queue ?? []) s?.write(r)
      queue = undefined
    },
    (err: unknown) => {
      queue = undefined
      onError(err as Error)
    },
  )
  return {
    write(r) {
      if (sink !== undefined) sink.write(r)
      else queue?.push(r)
    },
    async close() {
      const s = await opening.catch(() => undefined)
      await s?.close()
    },
  }
}
