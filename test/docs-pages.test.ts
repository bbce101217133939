/**
 * What docs/ derives from the code is up to date (build/docs.ts, `npm run docs`): the key
 * table of docs/configuration.md, the error table of docs/error-codes.md and the JSON Schema.
 * The JSON Schema accepts the shipped example configs and refuses what the loader refuses.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { Ajv2020 } from 'ajv/dist/2020.js'
import { parse } from 'yaml'
import { configKeys } from '../build/config-keys.ts'
import { ROOT, SCHEMA_FILE, fillRegion, generated } from '../build/docs.ts'
import { ERROR_CODES } from '../src/errors.ts'

const read = (f: string) => readFileSync(path.join(ROOT, f), 'utf8')

for (const [file, expected] of generated()) {
  test(`${file} is what npm run docs generates from the code`, () => {
    const a = expected.split('\n')
    const b = read(file).split('\n')
    const first = a.findIndex((line, i) => line !== b[i])
    const at = first === -1 ? Math.min(a.length, b.length) : first
    assert.ok(first === -1 && a.length === b.length, `${file} is stale at line ${at + 1}:\n  generated: ${a[at]}\n  on disk:   ${b[at]}\nRun npm run docs.`)
  })
}

test('a hand edit inside a generated region is stale, one outside it is kept', () => {
  const page = read('docs/error-codes.md')
  const inside = page.replace('| `egress_denied` | 403 |', '| `egress_denied` | 401 |')
  const outside = page.replace('# Error codes', '# Error codes (edited)')
  const regenerate = (text: string) => generated((f) => (f === 'docs/error-codes.md' ? text : read(f))).get('docs/error-codes.md')
  assert.notEqual(inside, page)
  assert.equal(regenerate(inside), page, 'the generated table replaces the edit')
  assert.equal(regenerate(outside), outside, 'prose around the table is the page author\'s')
  assert.throws(() => fillRegion('no markers', 'error-codes', ''), /no <!-- generated:error-codes:start -->/)
})

test('every error code of the registry is in docs/error-codes.md with its status', () => {
  const page = read('docs/error-codes.md')
  for (const [code, e] of Object.entries(ERROR_CODES)) assert.ok(page.includes(`| \`${code}\` | ${e.status} |`), `docs/error-codes.md lists ${code}`)
})

test('every config key the schema accepts is in docs/configuration.md, provider options included', () => {
  const page = read('docs/configuration.md')
  const keys = configKeys().map((k) => k.key)
  for (const must of ['cache.ttl', 'intercept.caDir', 'log.format', 'credentials.<name>.inject.header', 'providers.<name>.auth.role', 'providers.<name>.vaultUrl']) assert.ok(keys.includes(must), `the walk finds ${must}`)
  for (const key of keys) assert.ok(page.includes(`| \`${key}\` |`), `docs/configuration.md documents ${key}`)
})

const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false, logger: false })
const validate = ajv.compile(JSON.parse(read(SCHEMA_FILE)) as object)

test('the JSON Schema accepts the example configs, which point editors at it', () => {
  for (const file of ['examples/demo/latchkey.yaml', 'examples/minimal/latchkey.yaml', 'examples/minimal/latchkey.json']) {
    const text = read(file)
    assert.match(text, file.endsWith('.json') ? /"\$schema": "[./]*schema\/latchkey\.schema\.json"/ : /^# yaml-language-server: \$schema=[./]*schema\/latchkey\.schema\.json$/m, `${file} names the schema`)
    assert.ok(validate(parse(text)), `${file}: ${ajv.errorsText(validate.errors)}`)
  }
})

test('the JSON Schema refuses an unknown key, a provider option of another type and a credential without hosts', () => {
  assert.equal(validate({ cache: { tll: '5m' } }), false)
  assert.equal(validate({ providers: { e: { type: 'env', dir: '/x' } } }), false)
  assert.equal(validate({ providers: { e: { type: 'env' } }, credentials: { c: { provider: 'e', ref: 'X', inject: { type: 'bearer' } } } }), false)
  assert.equal(validate({ providers: { e: { type: 'env' } }, credentials: { c: { provider: 'e', ref: 'X', hosts: ['a.example.com'], inject: { type: 'bearer' } } } }), true)
})

test('the JSON Schema is shipped in the package', () => {
  const pkg = JSON.parse(read('package.json')) as { files: string[] }
  assert.ok(pkg.files.some((f) => SCHEMA_FILE.startsWith(f.replace(/\/$/, ''))), `package.json files includes ${SCHEMA_FILE}`)
})
