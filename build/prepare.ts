/**
 * `prepare` (npm runs it after `npm ci` / `npm install` in a clone, and when installing from a
 * git URL): build dist/, which installed copies run (Node does not strip types under
 * node_modules). A production-only install (`npm ci --omit=dev`, the image) has no esbuild
 * and has already built dist/: nothing to do there.
 */
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
let hasEsbuild = true
try {
  createRequire(import.meta.url).resolve('esbuild')
} catch {
  hasEsbuild = false
}
if (hasEsbuild) {
  // Its file list is for people running npm run build; an install shows only errors.
  const r = spawnSync(process.execPath, [path.join(ROOT, 'build', 'build.ts')], { stdio: ['ignore', 'ignore', 'inherit'] })
  process.exitCode = r.status ?? 1
}
