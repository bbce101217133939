/**
 * `prepack` / `postpack`: the packed package.json leaves out `prepare`. A tarball or registry
 * install already has dist/ and never runs it, but npm lists any such script as an install
 * script to approve — a warning every library user would have to ignore. A git or clone
 * install keeps it and builds dist/. `strip` saves the manifest as it was, `restore` puts it back
 * (and runs first, in case a failed pack left it stripped).
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const MANIFEST = path.join(ROOT, 'package.json')
const SAVED = path.join(ROOT, '.package.json.prepack')

function restore(): void {
  if (existsSync(SAVED)) renameSync(SAVED, MANIFEST)
}

function strip(): void {
  restore()
  const text = readFileSync(MANIFEST, 'utf8')
  const pkg = JSON.parse(text) as { scripts?: Record<string, string> }
  if (pkg.scripts?.prepare === undefined) return
  writeFileSync(SAVED, text)
  delete pkg.scripts.prepare
  writeFileSync(MANIFEST, JSON.stringify(pkg, null, 2) + '\n')
}

const action = process.argv[2]
if (action === 'strip') strip()
else if (action === 'restore') restore()
else throw new Error('usage: pack-manifest.ts strip|restore')
