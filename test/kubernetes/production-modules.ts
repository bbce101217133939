/**
 * A production-only `node_modules`, laid out offline from package-lock.json: what
 * `npm ci --omit=dev` installs, copied from the repository's own `node_modules` (no network).
 * Every lock entry that is not `"dev": true` is copied at its own path, so nested copies
 * (`a/node_modules/b`) keep their place; a package's own `node_modules` folder is left to the
 * entries below it, so no dev package comes along inside a production one.
 *
 * The cloud SDKs are optional peer dependencies (dev-only in the lock); the image installs
 * them on top (`build/sdk-packages.ts`), so the packages listed in `peerDependencies` and
 * everything they depend on are copied too.
 */
import { cpSync, existsSync, readFileSync } from 'node:fs'
import path from 'node:path'

interface LockEntry {
  dev?: boolean
  optional?: boolean
  link?: boolean
  dependencies?: Record<string, string>
  optionalDependencies?: Record<string, string>
}

/** Lock paths of `names` and of everything they depend on (Node's lookup: nearest node_modules first). */
function closure(packages: Record<string, LockEntry>, names: readonly string[]): Set<string> {
  const out = new Set<string>()
  const visit = (from: string, name: string) => {
    // Look in from/node_modules, then each parent's, up to the top-level node_modules.
    for (let dir = from; ; dir = dir.slice(0, Math.max(0, dir.lastIndexOf('/node_modules/')))) {
      const key = `${dir ? `${dir}/` : ''}node_modules/${name}`
      if (packages[key]) {
        if (out.has(key)) return
        out.add(key)
        const e = packages[key]
        for (const dep of Object.keys({ ...e.dependencies, ...e.optionalDependencies })) visit(key, dep)
        return
      }
      if (dir === '') return
    }
  }
  for (const n of names) visit('', n)
  return out
}

export interface ProductionTree {
  /** Lock paths copied (`node_modules/…`). */
  copied: string[]
  /** Lock paths left out because they are dev-only. */
  dev: string[]
}

export function copyProductionNodeModules(root: string, dest: string): ProductionTree {
  const lock = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8')) as { lockfileVersion?: number; packages?: Record<string, LockEntry> }
  if (!lock.packages || (lock.lockfileVersion ?? 0) < 2) throw new Error('package-lock.json has no "packages" map (lockfileVersion 2 or later is needed)')
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { peerDependencies?: Record<string, string> }
  const sdks = closure(lock.packages, Object.keys(pkg.peerDependencies ?? {}))
  const copied: string[] = []
  const dev: string[] = []
  for (const [key, entry] of Object.entries(lock.packages)) {
    if (!key.startsWith('node_modules/')) continue // the root package, or a workspace folder
    if (entry.dev === true && !sdks.has(key)) {
      dev.push(key)
      continue
    }
    if (entry.link === true) throw new Error(`${key} is a link in package-lock.json; the production layout does not follow links`)
    const from = path.join(root, key)
    if (!existsSync(from)) {
      // An optional package for another platform is in the lock but never installed.
      if (entry.optional === true) continue
      throw new Error(`${key} is in package-lock.json but not in node_modules: run npm ci`)
    }
    const own = path.join(from, 'node_modules')
    cpSync(from, path.join(dest, key), { recursive: true, verbatimSymlinks: true, filter: (src) => src !== own })
    copied.push(key)
  }
  return { copied, dev }
}
