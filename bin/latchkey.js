#!/usr/bin/env node
// latchkey runs on Node 24 LTS. `npm ci` installs it (the `node` devDependency), and npm
// scripts and `npx latchkey` put it first on the PATH.
const major = Number(process.versions.node.split('.')[0])
if (major < 24) {
  process.stderr.write(`latchkey needs Node 24 (this is ${process.version}). Run it with \`npx latchkey\` or an npm script so the project's Node is used.\n`)
  process.exit(1)
}
const { cli } = await import('../src/cli/main.ts')
await cli(process.argv.slice(2))
