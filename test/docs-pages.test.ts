/**
 * The pages in docs/ that repeat a README section (build/docs.ts writes them) say the same
 * thing as the README, line for line.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { PAGES, ROOT, pageFor, readmeSection } from '../build/docs.ts'

const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')

for (const { heading, page } of PAGES) {
  test(`${page} is the README section "${heading}", one heading level up (npm run docs writes it)`, () => {
    const a = pageFor(readmeSection(readme, heading)).split('\n')
    const b = readFileSync(path.join(ROOT, page), 'utf8').split('\n')
    const first = a.findIndex((line, i) => line !== b[i])
    const at = first === -1 ? Math.min(a.length, b.length) : first
    assert.ok(first === -1 && a.length === b.length, `${page} differs from the README section at line ${at + 1}:\n  README: ${a[at]}\n  docs:   ${b[at]}\nRun npm run docs.`)
  })
}

test('a section heading the README does not have is an error, not an empty page', () => {
  assert.throws(() => readmeSection(readme, 'No such section'), /no section "## No such section"/)
})
