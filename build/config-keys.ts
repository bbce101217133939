/**
 * The config keys as the schema defines them: walked from the zod schemas (the top-level
 * shape, the credential schema, each provider type's option schema), so the documented list
 * cannot drift from what the loader accepts. Types, defaults and "required" come from the
 * schema; only the one-line meaning is written by hand (`config-meanings.ts`), and a key
 * without one — or a meaning for a key that no longer exists — fails the generator.
 */
import { formatDuration } from '../src/values/duration.ts'
import { configShape } from '../src/config/schema.ts'
import { duration } from '../src/values/schema.ts'
import { PROVIDERS } from '../src/providers/registry.ts'

export interface ConfigKey {
  /** `cache.ttl`, `credentials.<name>.inject.header`. */
  key: string
  /** When the key applies: `type: vault`, `inject.type: header`; '' for always. */
  when: string
  type: string
  /** Rendered default, '' when none. */
  default: string
  required: boolean
}

type Def = { type: string; [k: string]: unknown }
const defOf = (s: unknown): Def => (s as { _zod: { def: Def } })._zod.def

/** The shared duration schema (schema-helpers.ts), alone or piped into a range check. */
function isDuration(s: unknown): boolean {
  return s === duration || (defOf(s).type === 'pipe' && isDuration(defOf(s).in))
}

function typeName(s: unknown): string {
  const d = defOf(s)
  if (isDuration(s)) return 'duration'
  switch (d.type) {
    case 'optional':
    case 'default':
    case 'nullable':
      return typeName(d.innerType)
    case 'pipe':
      return typeName(d.in)
    case 'string':
      return 'string'
    case 'number':
      return (s as { isInt?: boolean }).isInt ? 'integer' : 'number'
    case 'boolean':
      return 'boolean'
    case 'enum':
      return Object.values(d.entries as Record<string, string>).map((v) => `\`${v}\``).join(' \\| ')
    case 'literal':
      return (d.values as unknown[]).map((v) => `\`${String(v)}\``).join(' \\| ')
    case 'array':
      return `list of ${typeName(d.element)}s`
    case 'union':
      return (d.options as unknown[]).map(typeName).join(' \\| ')
    default:
      return d.type
  }
}

function renderDefault(s: unknown, value: unknown): string {
  if (value === undefined) return ''
  if (typeof value === 'object') return ''
  if (value === '') return '`""`'
  if (isDuration(s) && typeof value === 'number') return `\`${formatDuration(value)}\``
  return `\`${String(value)}\``
}

/** Unwrap optional/default layers; say whether the key may be left out and its default. */
function unwrap(s: unknown): { inner: unknown; optional: boolean; defaultValue: unknown } {
  let inner = s
  let optional = false
  let defaultValue: unknown
  for (;;) {
    const d = defOf(inner)
    if (d.type === 'optional') optional = true
    else if (d.type === 'default') {
      optional = true
      defaultValue ??= typeof d.defaultValue === 'function' ? (d.defaultValue as () => unknown)() : d.defaultValue
    } else break
    inner = d.innerType
  }
  return { inner, optional, defaultValue }
}

function walk(out: ConfigKey[], prefix: string, when: string, schema: unknown): void {
  const { inner, optional, defaultValue } = unwrap(schema)
  const d = defOf(inner)
  if (d.type === 'object') {
    for (const [k, v] of Object.entries(d.shape as Record<string, unknown>)) walk(out, prefix ? `${prefix}.${k}` : k, when, v)
    return
  }
  if (d.type === 'record') {
    walk(out, `${prefix}.<name>`, when, d.valueType)
    return
  }
  if (d.type === 'union' && typeof d.discriminator === 'string') {
    // One row for the discriminator (every option's literal), then each option's own keys.
    const disc = d.discriminator
    const options = d.options as unknown[]
    const values = options.flatMap((o) => (defOf(defOf(o).shape && (defOf(o).shape as Record<string, unknown>)[disc]).values as unknown[]) ?? [])
    out.push({ key: `${prefix}.${disc}`, when, type: values.map((v) => `\`${String(v)}\``).join(' \\| '), default: '', required: !optional })
    const rows: ConfigKey[] = []
    for (const o of options) {
      const shape = defOf(o).shape as Record<string, unknown>
      const tag = (defOf(shape[disc]).values as unknown[])[0]
      const cond = `${prefix.split('.').pop()}.${disc}: ${String(tag)}`
      for (const [k, v] of Object.entries(shape)) if (k !== disc) walk(rows, `${prefix}.${k}`, when ? `${when}, ${cond}` : cond, v)
    }
    // A key every option has alike (inject's `overwrite`) is one row without a condition.
    const same = (a: ConfigKey, b: ConfigKey) => a.key === b.key && a.type === b.type && a.default === b.default && a.required === b.required
    for (const r of rows) {
      const alike = rows.filter((x) => same(x, r))
      if (alike.length === options.length) {
        if (alike[0] === r) out.push({ ...r, when })
      } else out.push(r)
    }
    return
  }
  out.push({ key: prefix, when, type: typeName(inner), default: renderDefault(inner, defaultValue), required: !optional })
}

/** Every key, in schema order: top level, then credentials, routes, and each provider type. */
export function configKeys(): ConfigKey[] {
  const out: ConfigKey[] = []
  for (const [k, v] of Object.entries(configShape)) {
    if (k === 'providers') {
      out.push({ key: 'providers.<name>.type', when: '', type: Object.keys(PROVIDERS).map((t) => `\`${t}\``).join(' \\| '), default: '', required: true })
      for (const [type, factory] of Object.entries(PROVIDERS)) {
        const shape = defOf(factory.optionsSchema).shape as Record<string, unknown>
        for (const [opt, s] of Object.entries(shape)) if (opt !== 'type') walk(out, `providers.<name>.${opt}`, `type: ${type}`, s)
      }
    } else walk(out, k, '', v)
  }
  return out
}

/** The identity of a row for its meaning: the key, plus its condition when it has one. */
export const rowId = (k: Pick<ConfigKey, 'key' | 'when'>): string => (k.when ? `${k.key} [${k.when}]` : k.key)

