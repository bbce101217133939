import type { z } from 'zod'
import type { ConfigIssue } from '../errors.ts'
import { formatPath } from './interpolate.ts'
import { configSchema, configShape, credentialName, credentialSchema, providerEntrySchema, providerName, routeName, routeSchema, type RawConfig } from './schema.ts'

/** The first stage's result: every schema issue, and a config built from the parts that are valid. */
export interface ParsedSections {
  issues: ConfigIssue[]
  /** Valid sections as parsed; a field or record entry that failed is left at its default or left out. */
  raw: RawConfig
  /** Provider names the document defines, valid or not (a credential naming one is not "missing"). */
  providerNames: readonly string[]
  /** Credential entries that failed stage one, as written: their provider reference and host patterns are still checked. */
  failedCredentials: Readonly<Record<string, Record<string, unknown>>>
}

const RECORDS = {
  providers: { key: providerName, value: providerEntrySchema },
  credentials: { key: credentialName, value: credentialSchema },
  routes: { key: routeName, value: routeSchema },
} as const

/**
 * Stage one of `check`: the zod schema over the whole document, for the complete list of
 * schema problems. When it fails, each top-level field, each field of an object section
 * and each record entry is parsed again on its own, so the loader's cross-field checks
 * (provider options, references, wildcards, overlaps, plain http, ports) still run on
 * everything that is valid and `check` lists every problem in one run.
 */
export function parseSections(input: unknown): ParsedSections {
  const doc = isPlainObject(input) ? input : {}
  const providerNames = isPlainObject(doc.providers) ? Object.keys(doc.providers) : []
  const full = configSchema.safeParse(input)
  if (full.success) return { issues: [], raw: full.data, providerNames, failedCredentials: {} }

  const issues = full.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message }))
  const raw: Record<string, unknown> = {}
  const failedCredentials: Record<string, Record<string, unknown>> = {}
  for (const [key, schema] of Object.entries(configShape) as Array<[string, z.ZodType]>) {
    if (key in RECORDS) continue
    const inner = objectSection(schema)
    raw[key] = inner ? parseFields(inner, doc[key]) : parseOrDefault(schema, doc[key])
  }
  for (const [key, { key: keySchema, value }] of Object.entries(RECORDS) as Array<[string, { key: z.ZodType; value: z.ZodType }]>) {
    const entries: Record<string, unknown> = {}
    const src = doc[key]
    if (isPlainObject(src)) {
      for (const [name, entry] of Object.entries(src)) {
        if (!keySchema.safeParse(name).success) continue
        const r = value.safeParse(entry)
        if (r.success) entries[name] = r.data
        else {
          // A misspelt key is already reported; check the rest of the entry as if it were not there.
          const again = withoutUnknownKeys(entry, r.error.issues)
          const r2 = again === undefined ? undefined : value.safeParse(again)
          if (r2?.success) entries[name] = r2.data
          else if (key === 'credentials' && isPlainObject(entry)) failedCredentials[name] = entry
        }
      }
    }
    raw[key] = entries
  }
  return { issues, raw: raw as RawConfig, providerNames, failedCredentials }
}

/** The object schema inside `z.object(...).default(...)`, if the section is one. */
function objectSection(schema: z.ZodType): z.ZodObject | undefined {
  const def = (schema as unknown as { def: { type: string; innerType?: z.ZodType } }).def
  const inner = def.type === 'default' ? def.innerType : schema
  const innerDef = (inner as unknown as { def: { type: string } } | undefined)?.def
  return innerDef?.type === 'object' ? (inner as z.ZodObject) : undefined
}

/** Each field on its own: a valid one is kept, an invalid one falls back to its default. */
function parseFields(schema: z.ZodObject, input: unknown): Record<string, unknown> {
  const src = isPlainObject(input) ? input : {}
  const out: Record<string, unknown> = {}
  for (const [k, field] of Object.entries(schema.shape) as Array<[string, z.ZodType]>) out[k] = parseOrDefault(field, src[k])
  return out
}

function parseOrDefault(schema: z.ZodType, value: unknown): unknown {
  const r = schema.safeParse(value)
  if (r.success) return r.data
  const d = schema.safeParse(undefined)
  return d.success ? d.data : undefined
}

function withoutUnknownKeys(entry: unknown, issues: readonly z.core.$ZodIssue[]): Record<string, unknown> | undefined {
  if (!isPlainObject(entry)) return undefined
  const unknown = issues.filter((i) => i.code === 'unrecognized_keys' && i.path.length === 0).flatMap((i) => (i as { keys: string[] }).keys)
  if (unknown.length === 0) return undefined
  return Object.fromEntries(Object.entries(entry).filter(([k]) => !unknown.includes(k)))
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}
