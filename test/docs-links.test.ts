/**
 * Every relative link and #anchor in README.md, CONTRIBUTING.md and docs/ leads somewhere: the
 * file exists, and an anchor names a heading of that page as GitHub renders it (github-slugger:
 * GitHub's own slug rules, duplicates numbered). Links are read with a Markdown lexer, so
 * code blocks and inline code are not mistaken for links.
 */
import assert from 'node:assert/strict'
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import GithubSlugger from 'github-slugger'
import { marked, type Token } from 'marked'
import { ROOT } from '../build/docs.ts'

function markdownFiles(): string[] {
  const docs = (dir: string): string[] =>
    readdirSync(path.join(ROOT, dir)).flatMap((f) => {
      const rel = `${dir}/${f}`
      if (statSync(path.join(ROOT, rel)).isDirectory()) return docs(rel)
      return f.endsWith('.md') ? [rel] : []
    })
  return ['README.md', 'CONTRIBUTING.md', ...docs('docs')]
}

function walk(tokens: Token[] | undefined, each: (t: Token) => void): void {
  for (const t of tokens ?? []) {
    each(t)
    const o = t as { tokens?: Token[]; items?: Token[]; header?: { tokens: Token[] }[]; rows?: { tokens: Token[] }[][] }
    walk(o.tokens, each)
    walk(o.items, each)
    for (const cell of o.header ?? []) walk(cell.tokens, each)
    for (const row of o.rows ?? []) for (const cell of row) walk(cell.tokens, each)
  }
}

const pages = new Map<string, { anchors: Set<string>; links: string[] }>()
function page(file: string) {
  let p = pages.get(file)
  if (p) return p
  const tokens = marked.lexer(readFileSync(path.join(ROOT, file), 'utf8'))
  const slugger = new GithubSlugger()
  const anchors = new Set<string>()
  const links: string[] = []
  walk(tokens, (t) => {
    if (t.type === 'heading') anchors.add(slugger.slug((t as { text: string }).text.replace(/`/g, '').replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')))
    if (t.type === 'link' || t.type === 'image') links.push((t as { href: string }).href)
  })
  p = { anchors, links }
  pages.set(file, p)
  return p
}

const files = markdownFiles()

test('the link checker reads headings the way GitHub slugs them', () => {
  const s = new GithubSlugger()
  assert.equal(s.slug('Env-only mode (one credential, no file)'), 'env-only-mode-one-credential-no-file')
  assert.equal(s.slug('HTTPS interception (HTTPS_PROXY clients)'), 'https-interception-https_proxy-clients')
  assert.ok(files.includes('docs/configuration.md') && files.length >= 15, `found the pages (${files.length})`)
})

for (const file of files) {
  test(`every relative link and anchor in ${file} resolves`, () => {
    const broken: string[] = []
    for (const href of page(file).links) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(href)) continue // http:, https:, mailto:
      const [target = '', anchor] = href.split('#')
      const resolved = target === '' ? file : path.posix.normalize(path.posix.join(path.posix.dirname(file), target))
      if (!existsSync(path.join(ROOT, resolved))) {
        broken.push(`${href}: no file ${resolved}`)
        continue
      }
      if (anchor !== undefined && resolved.endsWith('.md') && !page(resolved).anchors.has(decodeURIComponent(anchor))) {
        broken.push(`${href}: ${resolved} has no heading #${anchor}`)
      }
    }
    assert.deepEqual(broken, [], `broken links in ${file}`)
  })
}
