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

// The young generation's cap, MiB per semi-space. V8 sizes it from the host's memory (two
// 64 MiB semi-spaces on a 16 GiB machine) and keeps it grown: a proxy under load then sits at
// 300+ MiB RSS. With 2 MiB its RSS stays near 100 MiB at the same throughput (see
// docs/benchmarks.md). The same value is in the image (deploy/docker/Dockerfile) and the
// injector's sidecar (src/injector/sidecar.ts).
const SEMI_SPACE_MIB = 2
// The commands that run a long-lived process; the others exit in milliseconds.
const LONG_LIVED = new Set(['run', 'exec', 'injector', 'echo'])
const FLAG = '--max-semi-space-size'
const userSetsIt = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((a) => a.includes(FLAG))
// V8 reads this flag only when the heap is set up, so the process replaces itself with one
// started with it (execve: same pid, signals and stdio, no parent left behind). A user's own
// setting, on the command line or in NODE_OPTIONS, wins; LATCHKEY_NO_REEXEC=1 turns this off.
// The new process also gets MALLOC_ARENA_MAX=2 unless the environment sets it: glibc reads it
// only at start, and with its default (8 arenas per core) a proxy under load held ~13 MiB more
// RSS at no CPU difference (docs/benchmarks.md).
if (LONG_LIVED.has(process.argv[2] ?? '') && !userSetsIt && process.env.LATCHKEY_NO_REEXEC !== '1' && typeof process.execve === 'function') {
  // execve is experimental in Node 24: its warning is for this process, which is replaced.
  const emitWarning = process.emitWarning
  process.emitWarning = () => {}
  try {
    process.execve(process.execPath, [process.execPath, `${FLAG}=${SEMI_SPACE_MIB}`, ...process.execArgv, ...process.argv.slice(1)], { MALLOC_ARENA_MAX: '2', ...process.env })
  } catch {
    // Not replaced (the Node binary cannot be executed again, e.g. deleted by an upgrade): run
    // here, with V8's own young-generation size.
    process.emitWarning = emitWarning
  }
}

// Node does not strip TypeScript types under node_modules: an installed copy runs the built
// JavaScript (`npm run build`, done by `prepack`); a clone runs the sources directly.
if (fileURLToPath(import.meta.url).includes(`${sep}node_modules${sep}`)) {
  await import('../dist/cli/latchkey.js')
} else {
  const { cli } = await import('../src/cli/main.ts')
  await cli(process.argv.slice(2))
}
