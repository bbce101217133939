import { readFileSync } from 'node:fs'
import path from 'node:path'
import type { ConfigIssue } from '../errors.ts'

const REF = /\$\{(env|file):([^}]*)\}/g

/** A string value that held `${...}` references: its text as written and what each reference resolved to. */
export interface InterpolatedValue {
  /** The value as written in the config (`${env:TOKEN}`, `${env:HOST}.example.com`). */
  readonly template: string
  readonly resolved: string
  readonly parts: ReadonlyArray<{ readonly ref: string; readonly value: string }>
}

/** Config path (`credentials.a.hosts[0]`) → the interpolated value found there. */
export type InterpolationSources = Map<string, InterpolatedValue>

/**
 * Replace `${env:NAME}` and `${file:PATH}` in every string value of a parsed document.
 * Problems (unset variable, unreadable file) are collected with their path, never thrown
 * one at a time, and never include the resolved value. Every substitution is recorded in
 * `sources` so later messages can name the reference instead of echoing its value.
 */
export function interpolate(
  doc: unknown,
  env: Readonly<Record<string, string | undefined>>,
  baseDir: string,
  issues: ConfigIssue[],
  sources: InterpolationSources = new Map(),
  at = '',
): unknown {
  if (typeof doc === 'string') {
    if (!doc.includes('${')) return doc
    const parts: Array<{ ref: string; value: string }> = []
    const resolved = doc.replace(REF, (ref: string, kind: string, arg: string) => {
      let value = ''
      if (kind === 'env') {
        const v = env[arg]
        if (v === undefined) issues.push({ path: at, message: `environment variable ${arg} is not set` })
        else value = v
      } else {
        const file = path.resolve(baseDir, arg)
        try {
          value = readFileSync(file, 'utf8').replace(/\r?\n$/, '')
        } catch (err) {
          issues.push({ path: at, message: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})` })
        }
      }
      parts.push({ ref, value })
      return value
    })
    if (parts.length > 0) sources.set(at, { template: doc, resolved, parts })
    return resolved
  }
  if (Array.isArray(doc)) return doc.map((v, i) => interpolate(v, env, baseDir, issues, sources, `${at}[${i}]`))
  if (doc !== null && typeof doc === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(doc)) out[k] = interpolate(v, env, baseDir, issues, sources, at ? `${at}.${k}` : k)
    return out
  }
  return doc
}

/** Format a zod-style path as `credentials.mlflow.hosts[0]`. */
export function formatPath(parts: ReadonlyArray<PropertyKey>): string {
  let out = ''
  for (const p of parts) {
    if (typeof p === 'number') out += `[${p}]`
    else out += out ? `.${String(p)}` : String(p)
  }
  return out
}
