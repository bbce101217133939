/**
 * `npm run docs`: write the pages in docs/ that are README sections on their own page
 * (one heading level up), so the two never drift. `test/docs-pages.test.ts` fails when a page
 * is out of date; run this after editing one of those README sections.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

/** README section heading → the docs page that repeats it. */
export const PAGES: ReadonlyArray<{ heading: string; page: string }> = [
  { heading: 'Use it from Python / curl / Node', page: 'docs/clients.md' },
  { heading: 'Kubernetes', page: 'docs/kubernetes.md' },
  { heading: 'Logging and redaction', page: 'docs/redaction.md' },
]

/** The README's `## heading` section, up to the next `## `, trailing blank lines dropped. */
export function readmeSection(readme: string, heading: string): string {
  const marker = `## ${heading}\n`
  const start = readme.startsWith(marker) ? 0 : readme.indexOf(`\n${marker}`) + 1
  if (start === 0 && !readme.startsWith(marker)) throw new Error(`README.md has no section "## ${heading}"`)
  const end = readme.indexOf('\n## ', start + marker.length)
  return readme.slice(start, end < 0 ? undefined : end).trimEnd() + '\n'
}

/** The page for a section: its "##" becomes the page title "#", each "###" a "##", and so on. */
export function pageFor(section: string): string {
  return section.replace(/^#{2,6} /gm, (h) => h.slice(1))
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  for (const { heading, page } of PAGES) {
    writeFileSync(path.join(ROOT, page), pageFor(readmeSection(readme, heading)))
    process.stdout.write(`wrote ${page}\n`)
  }
}
