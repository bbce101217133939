/**
 * `npm run docs`: write what the documentation derives from the code, so the two cannot drift.
 * docs/ is the source of the user documentation; only these parts are generated:
 *
 * - the key table in docs/configuration.md, from the zod schemas (`config-keys.ts`) and the
 *   one-line meanings (`config-meanings.ts`);
 * - the code table in docs/error-codes.md, from the error registry (src/errors.ts);
 * - schema/latchkey.schema.json, the JSON Schema editors use, from the same zod schemas.
 *
 * `test/docs-pages.test.ts` fails when any of them is stale.
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import { configShape, providerName } from '../src/config/schema.ts'
import { ERROR_CODES } from '../src/errors.ts'
import { PROVIDERS } from '../src/providers/registry.ts'
import { configKeys, rowId } from './config-keys.ts'
import { MEANINGS } from './config-meanings.ts'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const SCHEMA_FILE = 'schema/latchkey.schema.json'

/** The key table: every key the schema accepts, with its meaning; throws when they disagree. */
export function configKeyTable(): string {
  const keys = configKeys()
  const ids = new Set(keys.map(rowId))
  const missing = [...ids].filter((id) => MEANINGS[id] === undefined)
  const stale = Object.keys(MEANINGS).filter((id) => !ids.has(id))
  if (missing.length || stale.length) {
    throw new Error(`build/config-meanings.ts is out of step with the schema:${missing.map((m) => `\n  no meaning for ${m}`).join('')}${stale.map((s) => `\n  meaning for a key the schema does not have: ${s}`).join('')}`)
  }
  const rows = keys.map((k) => {
    const when = k.when ? ` (with \`${k.when}\`)` : ''
    return `| \`${k.key}\` | ${k.type} | ${k.required ? '**required**' : k.default || '—'} | ${MEANINGS[rowId(k)]}${when} |`
  })
  return ['| key | type | default | meaning |', '|---|---|---|---|', ...rows].join('\n')
}

/** The error-code table, in registry order. */
export function errorCodeTable(): string {
  const rows = Object.entries(ERROR_CODES).map(([code, e]) => `| \`${code}\` | ${e.status} | ${e.description} |`)
  return ['| code | HTTP | meaning |', '|---|---:|---|', ...rows].join('\n')
}

/**
 * The whole config as one zod schema: the top-level shape with each provider type's own
 * options, and an optional `$schema` (editors read it; the loader ignores it).
 */
function fullConfigSchema() {
  const [first, ...rest] = Object.values(PROVIDERS).map((p) => p.optionsSchema) as [z.ZodObject, ...z.ZodObject[]]
  return z
    .object({
      $schema: z.string().optional(),
      ...configShape,
      providers: z.record(providerName, z.discriminatedUnion('type', [first, ...rest])).optional(),
    })
    .strict()
}

type JsonSchema = { [k: string]: unknown; properties?: Record<string, JsonSchema>; additionalProperties?: JsonSchema | boolean; anyOf?: JsonSchema[]; oneOf?: JsonSchema[]; description?: string }

/** Attach each key's meaning as `description`, so an editor shows it on hover. */
function describe(node: JsonSchema, prefix: string, conds: string[]): void {
  const meaningOf = (key: string): string | undefined =>
    MEANINGS[key] ??
    Object.entries(MEANINGS).find(([id]) => id.startsWith(`${key} [`) && conds.every((c) => id.includes(c)))?.[1] ??
    Object.entries(MEANINGS).find(([id]) => id.startsWith(`${key} [`))?.[1]
  for (const branch of [...(node.anyOf ?? []), ...(node.oneOf ?? [])]) {
    const tag = Object.entries(branch.properties ?? {}).find(([, v]) => v.const !== undefined)
    describe(branch, prefix, tag ? [...conds, `${tag[0]}: ${String(tag[1].const)}`] : conds)
  }
  for (const [k, child] of Object.entries(node.properties ?? {})) {
    const key = prefix ? `${prefix}.${k}` : k
    const meaning = meaningOf(key)
    if (meaning) child.description = meaning.replace(/\[([^\]]+)\]\([^)]+\)/g, '$1')
    describe(child, key, conds)
  }
  if (typeof node.additionalProperties === 'object') describe(node.additionalProperties, `${prefix}.<name>`, conds)
}

/** The JSON Schema for latchkey.yaml / latchkey.json (input form: durations as written). */
export function configJsonSchema(): string {
  const schema = z.toJSONSchema(fullConfigSchema(), { io: 'input', unrepresentable: 'any' }) as JsonSchema
  describe(schema, '', [])
  return JSON.stringify({ ...schema, $id: 'https://latchkey.dev/schema/latchkey.schema.json', title: 'latchkey configuration' }, null, 2) + '\n'
}

/** Replace the text between `<!-- generated:NAME:start -->` and `...:end -->`. */
export function fillRegion(page: string, name: string, body: string): string {
  const start = `<!-- generated:${name}:start -->`
  const end = `<!-- generated:${name}:end -->`
  const a = page.indexOf(start)
  const b = page.indexOf(end)
  if (a < 0 || b < a) throw new Error(`no ${start} … ${end} region`)
  return page.slice(0, a + start.length) + '\n' + body + '\n' + page.slice(b)
}

/** Every generated file: path (relative to ROOT) → its up-to-date content. */
export function generated(read: (file: string) => string = (f) => readFileSync(path.join(ROOT, f), 'utf8')): Map<string, string> {
  return new Map([
    ['docs/configuration.md', fillRegion(read('docs/configuration.md'), 'config-keys', configKeyTable())],
    ['docs/error-codes.md', fillRegion(read('docs/error-codes.md'), 'error-codes', errorCodeTable())],
    [SCHEMA_FILE, configJsonSchema()],
  ])
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  mkdirSync(path.join(ROOT, 'schema'), { recursive: true })
  for (const [file, content] of generated()) {
    writeFileSync(path.join(ROOT, file), content)
    process.stdout.write(`wrote ${file}\n`)
  }
}
