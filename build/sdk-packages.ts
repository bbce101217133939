/**
 * Prints `name@version` for each cloud SDK (the optional peer dependencies), at the version
 * package-lock.json pins. The container image installs them on top of the production
 * dependencies: a library user installs only the SDK their provider needs, the image has all.
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

export function sdkPackages(root = ROOT): string[] {
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { peerDependencies?: Record<string, string> }
  const lock = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string }> }
  return Object.keys(pkg.peerDependencies ?? {}).map((name) => {
    const version = lock.packages[`node_modules/${name}`]?.version
    if (!version) throw new Error(`${name} is a peer dependency but package-lock.json does not pin it (it is also a devDependency: run npm install)`)
    return `${name}@${version}`
  })
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.stdout.write(sdkPackages().join(' ') + '\n')
