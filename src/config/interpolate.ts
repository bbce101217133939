import { readFileSync } from 'node:fs'
import path from 'node:path'
import type { ConfigIssue } from '../errors.ts'

const REF = /\$\{(env|file):([^}]*)\}/g

/**
 * Replace `${env:NAME}` and `${file:PATH}` in every string value of a parsed document.
 * Problems (unset variable, unreadable file) are collected with their path, never thrown
 * one at a time, and never include the resolved value.
 */
export function interpolate(
  doc: unknown,
  env: Readonly<Record<string, string | undefined>>,
  baseDir: string,
  issues: ConfigIssue[],
  at = '',
): unknown {
  if (typeof doc === 'string') {
    if (!doc.includes('${')) return doc
    return doc.replace(REF, (_m, kind: string, arg: string) => {
      if (kind === 'env') {
        const v = env[arg]
        if (v === undefined) {
          issues.push({ path: at, message: `environment variable ${arg} is not set` })
          return ''
        }
        return v
      }
      const file = path.resolve(baseDir, arg)
      try {
        return readFileSync(file, 'utf8').replace(/\r?\n$/, '')
      } catch (err) {
        issues.push({ path: at, message: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})` })
        return ''
      }
    })
  }
  if (Array.isArray(doc)) return doc.map((v, i) => interpolate(v, env, baseDir, issues, `${at}[${i}]`))
  if (doc !== null && typeof doc === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(doc)) out[k] = interpolate(v, env, baseDir, issues, at ? `${at}.${k}` : k)
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
