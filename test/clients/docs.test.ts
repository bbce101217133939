/**
 * The README section "Use it from Python / curl / Node" names, for each command, the test that
 * runs it; those files exist. (test/docs-pages.test.ts keeps docs/clients.md equal to the section.)
 */
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { ROOT, readmeSection } from '../../build/docs.ts'

const section = readmeSection(readFileSync(path.join(ROOT, 'README.md'), 'utf8'), 'Use it from Python / curl / Node')

test('every test file the section\'s "Where each command is tested" table names exists', () => {
  const table = section.slice(section.indexOf('Where each command is tested'))
  const files = [...table.matchAll(/`(test\/[\w./-]+\.test\.ts)`/g)].map((m) => m[1] as string)
  assert.ok(files.length >= 8, `the table names the test files (${files.length})`)
  for (const f of files) assert.ok(existsSync(path.join(ROOT, f)), `${f} exists`)
})
