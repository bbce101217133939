/**
 * CONTRIBUTING.md names, for each command of docs/clients.md, the test that runs it; those
 * files exist.
 */
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { ROOT } from '../../build/docs.ts'

const section = readFileSync(path.join(ROOT, 'CONTRIBUTING.md'), 'utf8')

test('every test file the "where each command of docs/clients.md is tested" table names exists', () => {
  const start = section.indexOf('### Clients: where each command')
  assert.ok(start >= 0, 'CONTRIBUTING.md has the table')
  const table = section.slice(start, section.indexOf('\n### ', start + 1))
  const files = [...table.matchAll(/`(test\/[\w./-]+\.test\.ts)`/g)].map((m) => m[1] as string)
  assert.ok(files.length >= 8, `the table names the test files (${files.length})`)
  for (const f of files) assert.ok(existsSync(path.join(ROOT, f)), `${f} exists`)
})
