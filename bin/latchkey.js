#!/usr/bin/env node
// latchkey runs on Node 24 LTS. `npm ci` installs it (the `node` devDependency), and npm
// scripts and `npx latchkey` put it first on the PATH.
import { sep } from 'node:path'
import { fileURLToPath } from 'node:url'

const major = Number(process.versions.node.split('.')[0])
if (major < 24) {
  process.stderr.write(`latchkey needs Node 24 (this is ${process.version}). Run it with \`npx latchkey\` or an npm script so the project's Node is used.\n`)
  process.exit(1)
}
// Node does not strip TypeScript types under node_modules: an installed copy runs the built
// JavaScript (`npm run build`, done by `prepack`); a clone runs the sources directly.
if (fileURLToPath(import.meta.url).includes(`${sep}node_modules${sep}`)) {
  await import('../dist/cli/latchkey.js')
} else {
  const { cli } = await import('../src/cli/main.ts')
  await cli(process.argv.slice(2))
}
