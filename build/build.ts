/**
 * `npm run build`: bundle the CLI into `dist/` for the container image, and the library entries
 * (`latchkey`, `latchkey/register`) that `exports` points installed copies at.
 *
 * What the image copies, and nothing else: `dist/`, `package.json`, and production
 * `node_modules` (dependencies stay external: `packages: 'external'`, so the SDKs keep their
 * own files and their lazy `import()`s stay lazy).
 *
 * The bundle is written to `dist/cli/latchkey.js`, the same depth below the package root as
 * `src/cli/main.ts`: `main.ts` finds `package.json` (for `latchkey version`) two directories
 * above its own file, and that stays true in the bundle.
 *
 * Options: `--outdir DIR` (default `dist`), `--check` (also run `latchkey version` from the
 * output with no source tree around it).
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { isBuiltin } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { build, stop, type Plugin } from 'esbuild'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

/** The CLI entry the image runs and an installed bin loads. */
const CLI_ENTRY = 'src/cli/run-cli.ts'
/** Library entries for `exports` (consumers cannot run TypeScript from node_modules). */
const LIBRARY_ENTRIES = { index: 'src/index.ts', 'shim/register': 'src/shim/register.ts' }

export interface BuildResult {
  outdir: string
  /** The file the image runs: `node <outdir>/cli/latchkey.js`. */
  entry: string
  /** Output files and their sizes in bytes. */
  files: Record<string, number>
  /**
   * The packages the output imports (statically or with `import()`), sorted: they must all be
   * in production `node_modules`. Node built-ins are left out.
   */
  externals: string[]
}

/**
 * `node:http` for the bundle, read with `process.getBuiltinModule` instead of an ESM import.
 * Node builds an ESM import's namespace by reading every export, and reading `http.WebSocket`
 * (a lazy getter) loads Node's own bundled undici: 13 MiB of RSS in a process that never uses
 * it (measured: an ESM file importing `node:http` is at 60 MiB, the same with
 * `getBuiltinModule` at 47). The names are listed so that an import of any other name fails
 * the build instead of being undefined at run time.
 */
const LEAN_HTTP = `const http = process.getBuiltinModule('node:http')
export default http
export const { Agent, ClientRequest, IncomingMessage, METHODS, OutgoingMessage, STATUS_CODES, Server, ServerResponse, createServer, get, globalAgent, maxHeaderSize, request, setMaxIdleHTTPParsers, validateHeaderName, validateHeaderValue } = http
`

const leanHttp: Plugin = {
  name: 'lean-node-http',
  setup(b) {
    b.onResolve({ filter: /^(node:)?http$/ }, (args) => (args.kind === 'import-statement' || args.kind === 'dynamic-import' ? { path: 'node:http', namespace: 'lean-http' } : undefined))
    b.onLoad({ filter: /.*/, namespace: 'lean-http' }, () => ({ contents: LEAN_HTTP, loader: 'js' }))
  },
}

export async function buildDist(outdir = path.join(ROOT, 'dist')): Promise<BuildResult> {
  const entry = path.join(ROOT, CLI_ENTRY)
  if (!existsSync(entry)) throw new Error(`no app entry: ${CLI_ENTRY} does not exist`)
  rmSync(outdir, { recursive: true, force: true })
  mkdirSync(outdir, { recursive: true })
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: { 'cli/latchkey': entry, ...LIBRARY_ENTRIES },
    outdir,
    bundle: true,
    packages: 'external',
    platform: 'node',
    target: 'node24',
    format: 'esm',
    // Keeps lazy `import()`s as chunks loaded on demand. Chunks sit next to the entry, at the same
    // depth, because `main.ts` locates the package root relative to its own file.
    splitting: true,
    chunkNames: 'cli/[name]-[hash]',
    sourcemap: true,
    // Stack traces from the image point at src/… through the map (`--enable-source-maps`).
    sourcesContent: false,
    legalComments: 'linked',
    metafile: true,
    logLevel: 'warning',
    // The bin entry is a plain .js file that imports .ts: esbuild strips the types itself.
    resolveExtensions: ['.ts', '.js'],
    plugins: [leanHttp],
  }).finally(() => {
    // esbuild's service process would otherwise keep a caller (a test) alive for seconds.
    void stop()
  })
  const files: Record<string, number> = {}
  const externals = new Set<string>()
  for (const [file, meta] of Object.entries(result.metafile.outputs)) {
    files[path.relative(outdir, path.resolve(ROOT, file))] = meta.bytes
    for (const i of meta.imports) if (i.external && !isBuiltin(i.path)) externals.add(i.path)
  }
  // A marker the image test and the Dockerfile lint read: which entry the image runs.
  writeFileSync(path.join(outdir, 'build-info.json'), JSON.stringify({ entry: 'dist/cli/latchkey.js', source: path.relative(ROOT, entry), node: 'node24' }, null, 2) + '\n')
  return { outdir, entry: path.join(outdir, 'cli', 'latchkey.js'), files, externals: [...externals].sort() }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { outdir: { type: 'string' }, check: { type: 'boolean', default: false } } })
  const outdir = values.outdir ? path.resolve(values.outdir) : path.join(ROOT, 'dist')
  const r = await buildDist(outdir)
  for (const [file, bytes] of Object.entries(r.files).sort()) process.stdout.write(`  ${file.padEnd(48)} ${(bytes / 1024).toFixed(1).padStart(8)} KiB\n`)
  if (values.check) {
    const v = spawnSync(process.execPath, [r.entry, 'version'], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 })
    if (v.status !== 0) throw new Error(`built CLI failed \`version\`: ${v.stderr}`)
    process.stdout.write(`check: ${v.stdout.trim()}\n`)
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`build failed: ${(err as Error).message}\n`)
    process.exitCode = 1
  })
}
