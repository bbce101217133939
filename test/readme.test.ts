import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { ERROR_CODES } from '../src/errors.ts'
import { configSchema, credentialSchema } from '../src/config/schema.ts'
import { ROOT } from './helpers/child.ts'

const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
const ci = readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8')

test('the README opens with the set-up: npm ci, one command to run the built-in default, one to run the tests', () => {
  const quick = readme.slice(0, readme.indexOf('## How requests flow'))
  assert.match(quick, /npm ci\n/)
  assert.match(quick, /npm start/)
  assert.match(quick, /npm test/)
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string>; engines: { node: string }; devDependencies: Record<string, string> }
  assert.match(pkg.scripts.start ?? '', /run --demo/)
  assert.ok(pkg.devDependencies.node?.startsWith('^24'), 'Node 24 is pinned as a devDependency')
  assert.match(pkg.engines.node, /24/)
})

test('CI runs exactly the README test command', () => {
  assert.match(ci, /^npm ci\b/m)
  assert.match(ci, /^npm test$/m)
})

test('every error code is listed in the README error table', () => {
  for (const code of Object.keys(ERROR_CODES)) assert.ok(readme.includes(`| \`${code}\` |`), `README lists ${code}`)
})

test('every config key is documented in the README', () => {
  const shape = configSchema.shape as Record<string, unknown>
  const keys: string[] = []
  const nested = (name: string, schema: unknown) => {
    let s = schema as { unwrap?: () => unknown; shape?: Record<string, unknown>; def?: { innerType?: unknown } }
    for (let i = 0; i < 5 && !s.shape && (s.def?.innerType || s.unwrap); i++) s = (s.def?.innerType ?? s.unwrap?.()) as typeof s
    if (['providers', 'credentials', 'routes'].includes(name)) return // documented per entry below
    if (s.shape) for (const k of Object.keys(s.shape)) keys.push(`${name}.${k}`)
    else keys.push(name)
  }
  for (const [k, v] of Object.entries(shape)) nested(k, v)
  for (const k of Object.keys(credentialSchema.shape)) keys.push(`credentials.<name>.${k}`)
  keys.push('providers.<name>.type', 'routes.<name>.upstream')
  assert.ok(keys.includes("cache.ttl") && keys.includes("intercept.caDir") && keys.length > 30, `walked the schema (${keys.length} keys)`)
  for (const key of keys) assert.ok(readme.includes(`\`${key}\``), `README documents ${key}`)
})
