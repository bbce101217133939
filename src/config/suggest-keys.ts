import { distance } from 'fastest-levenshtein'
import type { ConfigIssue } from '../errors.ts'
import { PROVIDERS } from '../providers/registry.ts'
import { configSchema } from './schema.ts'

type Def = { type: string; innerType?: unknown; shape?: Record<string, unknown>; valueType?: unknown; options?: unknown[] }
const defOf = (s: unknown): Def | undefined => (s as { _zod?: { def: Def } } | undefined)?._zod?.def

function unwrap(s: unknown): unknown {
  let d = defOf(s)
  while (d && (d.type === 'optional' || d.type === 'default')) {
    s = d.innerType
    d = defOf(s)
  }
  return s
}

/** The keys an object schema accepts (every option's, for a union). */
function keysOf(s: unknown): string[] {
  const d = defOf(unwrap(s))
  if (d?.type === 'object') return Object.keys(d.shape ?? {})
  if (d?.type === 'union') return [...new Set((d.options ?? []).flatMap(keysOf))]
  return []
}

function child(s: unknown, key: string): unknown {
  const d = defOf(unwrap(s))
  if (d?.type === 'object') return d.shape?.[key]
  if (d?.type === 'record') return d.valueType
  if (d?.type === 'union') return (d.options ?? []).map((o) => child(o, key)).find((c) => c !== undefined)
  return undefined
}

/** The keys accepted at a config path such as `cache` or `providers.vault.auth`. */
function keysAt(issuePath: string, input: unknown): string[] {
  const segments = issuePath === '' ? [] : issuePath.replace(/\[\d+\]/g, '').split('.')
  let schema: unknown = configSchema
  if (segments[0] === 'providers' && segments.length >= 2) {
    // Provider entries are validated by their type's own schema.
    const entry = (input as { providers?: Record<string, { type?: unknown }> } | undefined)?.providers?.[segments[1] as string]
    schema = typeof entry?.type === 'string' ? PROVIDERS[entry.type]?.optionsSchema : undefined
    segments.splice(0, 2)
  }
  for (const s of segments) schema = child(schema, s)
  return keysOf(schema)
}

/** The known key closest to a misspelt one, when it is close enough to be what was meant. */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Infinity
  for (const k of known) {
    const d = distance(key.toLowerCase(), k.toLowerCase())
    if (d < bestDistance) [best, bestDistance] = [k, d]
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined
}

/**
 * zod says `Unrecognized key: "tll"`; say `unknown key "tll" (did you mean "ttl"?)` when a
 * known key at that path is close, and list the known keys otherwise.
 */
export function suggestKeys(issues: readonly ConfigIssue[], input: unknown): ConfigIssue[] {
  return issues.map((issue) => {
    if (!/^Unrecognized keys?: /.test(issue.message)) return issue
    const known = keysAt(issue.path, input)
    const unknownKeys = [...issue.message.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1] as string)
    const parts = unknownKeys.map((k) => {
      const near = closestKey(k, known)
      return near ? `unknown key "${k}" (did you mean "${near}"?)` : `unknown key "${k}"${known.length ? ` (known: ${known.join(', ')})` : ''}`
    })
    return { path: issue.path, message: parts.join('; ') }
  })
}
