/**
 * The README section "Use it from Python / curl / Node" and docs/clients.md say the same
 * thing, and the section's table of tests names files that exist.
 */
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const HEADING = '## Use it from Python / curl / Node\n'

function readmeSection(): string {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const start = readme.indexOf(HEADING)
  assert.ok(start >= 0, 'the README has the section')
  const end = readme.indexOf('\n## ', start + HEADING.length)
  return readme.slice(start, end < 0 ? undefined : end).trimEnd() + '\n'
}

test('docs/clients.md is the README section "Use it from Python / curl / Node", one heading level up', () => {
  // On its own page the section's "##" is the page title "#", its "###" subsections "##".
  const expected = readmeSection().replace(/^#{2,6} /gm, (h) => h.slice(1))
  const docs = readFileSync(path.join(ROOT, 'docs', 'clients.md'), 'utf8')
  const a = expected.split('\n')
  const b = docs.split('\n')
  const first = a.findIndex((line, i) => line !== b[i])
  assert.ok(first === -1 && a.length === b.length, `docs/clients.md differs from the README section at line ${first + 1}:\n  README: ${a[first]}\n  docs:   ${b[first]}`)
})

test('every test file the section\'s "Where each command is tested" table names exists', () => {
  const section = readmeSection()
  const table = section.slice(section.indexOf('Where each command is tested'))
  const files = [...table.matchAll(/`(test\/[\w./-]+\.test\.ts)`/g)].map((m) => m[1] as string)
  assert.ok(files.length >= 8, `the table names the test files (${files.length})`)
  for (const f of files) assert.ok(existsSync(path.join(ROOT, f)), `${f} exists`)
})
