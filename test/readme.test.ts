/**
 * The README is a landing page: short, the quick start first, and one click from every docs
 * page a newcomer needs (the key table and the error codes included).
 */
import assert from 'node:assert/strict'
import { readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { ROOT } from './helpers/child.ts'

const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
const ci = readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8')

test('the README is at most 15 KB', () => {
  const bytes = statSync(path.join(ROOT, 'README.md')).size
  assert.ok(bytes <= 15 * 1024, `README.md is ${bytes} bytes`)
})

test('the README opens with the set-up: npm ci, one command to run the demo, one to run the tests, and why npm may warn about the engine', () => {
  const quick = readme.slice(readme.indexOf('## Quick start'), readme.indexOf('## Pick your way in'))
  assert.match(quick, /npm ci\n/)
  assert.match(quick, /npm start/)
  assert.match(quick, /npm test/)
  assert.match(quick, /EBADENGINE/)
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string>; engines: { node: string }; devDependencies: Record<string, string> }
  assert.match(pkg.scripts.start ?? '', /run --demo/)
  assert.ok(pkg.devDependencies.node?.startsWith('^24'), 'Node 24 is pinned as a devDependency')
  assert.match(pkg.engines.node, /24/)
})

test('CI runs exactly the README test command', () => {
  assert.match(ci, /^npm ci\b/m)
  assert.match(ci, /^npm test$/m)
})

test('the README has the landing-page parts: a diagram, the ways in, a minimal config, providers, CLI, security model, comparison', () => {
  for (const heading of ['## How it works', '## Quick start', '## Pick your way in', '## A minimal `latchkey.yaml`', '## Providers', '## CLI in brief', '## Security model', '## How it compares', '## More']) {
    assert.ok(readme.includes(`\n${heading}\n`), `README has "${heading}"`)
  }
  assert.match(readme, /```mermaid\n/)
  for (const peer of ['AWS SM Agent', 'Vault Agent', 'secretless', 'tokenizer', 'Envoy']) assert.ok(readme.includes(peer), `the comparison names ${peer}`)
})

test('every docs page a newcomer looks for is one click from the README', () => {
  for (const page of ['docs/configuration.md', 'docs/error-codes.md', 'docs/troubleshooting.md', 'docs/how-it-works.md', 'docs/providers.md', 'docs/clients.md', 'docs/kubernetes.md', 'docs/host-binding.md', 'docs/admin-api.md', 'docs/cli.md', 'docs/redaction.md', 'docs/threat-model.md', 'docs/benchmarks.md', 'CONTRIBUTING.md']) {
    assert.ok(readme.includes(`](${page}`), `README links to ${page}`)
  }
})

test('the README minimal config is the shipped example (which the JSON Schema and the loader accept)', () => {
  const block = /## A minimal `latchkey.yaml`\n\n```yaml\n([\s\S]*?)```/.exec(readme)?.[1] ?? assert.fail('no yaml block')
  const example = readFileSync(path.join(ROOT, 'examples', 'minimal', 'latchkey.yaml'), 'utf8')
  const body = (t: string) => t.split('\n').filter((l) => !l.startsWith('#')).join('\n').trim()
  assert.equal(body(block), body(example))
})
