import { chmodSync, readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import v8 from 'node:v8'
import { Command, CommanderError, Option } from 'commander'
import { startDaemon } from '../daemon.ts'
import { checkListeners, parseListenAddress } from '../config/listeners.ts'
import { loadConfigFile, type Config, type LoadResult } from '../config/load.ts'
import { caCommand } from './ca-command.ts'
import { doctor } from './doctor.ts'
import { createEchoServer } from './echo-server.ts'
import { execCommand } from './exec-command.ts'
import { injectorCommand } from './injector-command.ts'
import { findConfig, formatIssues, loadFrom } from './config-source.ts'
import type { CliIo } from './io.ts'
import { createPrettyDestination } from '../redact/logger.ts'
import { listenFailure, startupSummary } from './startup-summary.ts'

const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const DEMO_CONFIG = path.join(PACKAGE_ROOT, 'examples', 'demo', 'latchkey.yaml')
const DEMO_ECHO = { host: '127.0.0.1', port: 8183 }

export function version(): string {
  return (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version
}

/** Build the CLI. Each action resolves to an exit code; nothing here calls process.exit. */
export function buildProgram(io: CliIo, setCode: (code: number) => void): Command {
  const program = new Command('latchkey')
    .description('secrets-broker sidecar: injects credentials into outbound HTTP requests, only for the hosts each credential is bound to')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .showHelpAfterError()
    .version(`latchkey ${version()}`, '-V, --version', 'print the version')

  program
    .command('run')
    .description('run the daemon (config from -c, else $LATCHKEY_CONFIG, else ./latchkey.yaml, else env-only mode)')
    .option('-c, --config <file>', 'config file (YAML or JSON)')
    .option('--demo', 'run the built-in local example (env + file secrets) with an echo upstream on 127.0.0.1:8183')
    .option('--listen <host:port>', 'proxy listener, overriding the config (keep it on loopback, or unix:/path/proxy.sock)')
    .option('--admin-listen <host:port>', 'admin listener, overriding the config (a pod binds 0.0.0.0:8182 so kubelet probes reach it)')
    .addOption(new Option('--log-level <level>', 'lowest level logged, overriding log.level').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']))
    .action(async (o: RunOptions) => setCode(await run(io, o)))

  program
    .command('check')
    .description('validate the configuration without any network access; lists every problem with its path')
    .option('-c, --config <file>', 'config file')
    .action((o: { config?: string }) => {
      const r = loadFrom(findConfig(o.config, io), io)
      if (!r.ok) {
        io.stderr.write(formatIssues(r.issues))
        return setCode(2)
      }
      for (const w of r.config.warnings) io.stdout.write(`warning: ${w}\n`)
      io.stdout.write(`configuration is valid: ${Object.keys(r.config.credentials).length} credential(s), ${Object.keys(r.config.providers).length} provider(s), ${Object.keys(r.config.routes).length} route(s)\n`)
      setCode(0)
    })

  program
    .command('doctor')
    .description('fetch every credential (fingerprints only) and check each provider; --dry-run [METHOD] URL says which credential would be injected and which allow rule lets the request through')
    .option('-c, --config <file>', 'config file')
    .option('--dry-run <method-and-url...>', 'say which credential would be injected into a request to URL (and whether its allow rules let METHOD through, GET by default), or why none')
    .option('--method <method>', 'the method for --dry-run (as `--dry-run METHOD URL`)')
    .action(async (o: { config?: string; dryRun?: string[]; method?: string }) => {
      const r = loadFrom(findConfig(o.config, io), io)
      if (!r.ok) {
        io.stderr.write(formatIssues(r.issues))
        return setCode(2) // as check and run: 2 is "the configuration is invalid" for every command
      }
      const d = o.dryRun
      if (d !== undefined && d.length > 2) {
        io.stderr.write(`latchkey doctor: --dry-run takes [METHOD] URL, got ${d.length} arguments\n`)
        return setCode(2)
      }
      // Node's parser takes methods in upper case only, so `delete` on the command line means DELETE.
      const dryRun = d === undefined ? undefined : { url: d[d.length - 1] as string, method: ((d.length === 2 ? d[0] : o.method) ?? 'GET').toUpperCase() }
      setCode(await doctor(r.config, io, dryRun))
    })

  program
    .command('echo')
    .description('a local upstream that answers with the request it received (to see what latchkey sends)')
    .option('--listen <host:port>', 'address', `${DEMO_ECHO.host}:${DEMO_ECHO.port}`)
    .action(async (o: { listen: string }) => {
      const i = o.listen.lastIndexOf(':')
      const server = createEchoServer()
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(Number(o.listen.slice(i + 1)), o.listen.slice(0, i), resolve))
      io.stdout.write(`echo upstream listening on http://${o.listen}\n`)
      await aborted(io.signal)
      await new Promise((r) => server.close(r))
      setCode(0)
    })

  program
    .command('version')
    .description('print the version')
    .action(() => {
      io.stdout.write(`latchkey ${version()}\n`)
      setCode(0)
    })

  program.addCommand(execCommand(io, setCode))
  program.addCommand(caCommand(io, setCode))
  program.addCommand(injectorCommand(io))

  return program
}

interface RunOptions {
  config?: string
  demo?: boolean
  listen?: string
  adminListen?: string
  logLevel?: Config['log']['level']
}

/** Apply --listen / --admin-listen to a loaded config (validated like the file's values). */
function withListenOverrides(config: Config, o: RunOptions, cwd: string): Config | string {
  const parse = (v: string, flag: string) => {
    // Only the proxy listener may be a Unix socket (a relative path is against the working directory).
    const r = parseListenAddress(v, flag === '--listen' ? (p) => path.resolve(cwd, p) : undefined)
    return typeof r === 'string' ? `${flag}: ${r}` : r
  }
  let listen = config.listen
  let admin = config.admin
  if (o.listen !== undefined) {
    const r = parse(o.listen, '--listen')
    if (typeof r === 'string') return r
    listen = r
  }
  if (o.adminListen !== undefined) {
    const r = parse(o.adminListen, '--admin-listen')
    if (typeof r === 'string') return r
    admin = Object.freeze({ ...config.admin, listen: r })
  }
  const log = o.logLevel === undefined ? config.log : Object.freeze({ ...config.log, level: o.logLevel })
  if (o.listen === undefined && o.adminListen === undefined) return log === config.log ? config : Object.freeze({ ...config, log })
  // The listener rule again, for the addresses the flags chose; the file's listener warnings give way to these.
  const next = { ...config, listen, admin, log }
  const r = checkListeners(next, { listen: '--listen', adminListen: '--admin-listen' })
  if (r.issues.length > 0) return r.issues.map((i) => `${i.path}: ${i.message}`).join('\n')
  const stale = new Set(checkListeners(config).warnings)
  return Object.freeze({ ...next, warnings: Object.freeze([...config.warnings.filter((w) => !stale.has(w)), ...r.warnings]) })
}

/**
 * The demo's secret file is checked out world-readable (git keeps no other mode); the file
 * provider would warn about it on every `npm start`. Make it owner-only, as a real one should
 * be; a read-only install keeps the mode and the warning.
 */
function tightenDemoSecrets(): void {
  const dir = path.join(path.dirname(DEMO_CONFIG), 'secrets')
  try {
    for (const f of readdirSync(dir)) {
      const file = path.join(dir, f)
      if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600)
    }
  } catch {
    // not ours to change
  }
}

async function run(io: CliIo, o: RunOptions): Promise<number> {
  let env = io.env
  let result: LoadResult
  if (o.demo) {
    env = { ...io.env, LATCHKEY_DEMO_TOKEN: io.env.LATCHKEY_DEMO_TOKEN ?? 'demo-env-token-0042', LATCHKEY_DEMO_PROXY_TOKEN: io.env.LATCHKEY_DEMO_PROXY_TOKEN ?? 'demo-proxy-token-0042' }
    tightenDemoSecrets()
    result = loadConfigFile(DEMO_CONFIG, env)
    // The demo's plain-http loopback credentials are deliberate (its banner says so): its
    // warnings are about its own settings, not the user's.
    if (result.ok) result = { ok: true as const, config: Object.freeze({ ...result.config, warnings: Object.freeze([]) }) }
  } else {
    result = loadFrom(findConfig(o.config, io), io)
  }
  if (!result.ok) {
    io.stderr.write(formatIssues(result.issues))
    return 2
  }
  const config = withListenOverrides(result.config, o, io.cwd)
  if (typeof config === 'string') {
    io.stderr.write(`latchkey: ${config}\n`)
    return 2
  }
  let echo: ReturnType<typeof createEchoServer> | undefined
  if (o.demo) {
    echo = createEchoServer()
    try {
      await new Promise<void>((resolve, reject) => echo!.once('error', reject).listen(DEMO_ECHO.port, DEMO_ECHO.host, resolve))
    } catch (err) {
      io.stderr.write(`latchkey: cannot start: ${listenFailure(err, config, { name: 'demo echo upstream', address: `${DEMO_ECHO.host}:${DEMO_ECHO.port}`, setting: 'examples/demo/latchkey.yaml' })}\n`)
      return 1
    }
  }
  // Lines for people on a terminal (or when asked), JSON lines for machines elsewhere.
  const tty = (io.stdout as { isTTY?: boolean }).isTTY === true
  const pretty = config.log.format === 'pretty' || (config.log.format === undefined && tty)
  const logStream = pretty ? await createPrettyDestination(io.stdout, tty && io.env.NO_COLOR === undefined) : io.stdout
  let daemon
  try {
    daemon = await startDaemon({ config, env, logStream })
  } catch (err) {
    io.stderr.write(`latchkey: cannot start: ${listenFailure(err, config)}\n`)
    echo?.close()
    return 1
  }
  for (const line of startupSummary(daemon.config, daemon.proxyUrl, daemon.adminUrl)) daemon.logger.info({ event: 'startup_summary' }, line)
  if (o.demo) {
    // The demo's own proxy client token is a demo value like its secrets, shown so the banner's
    // commands work; one the user set is theirs and never printed.
    const token = io.env.LATCHKEY_DEMO_PROXY_TOKEN === undefined ? 'demo-proxy-token-0042' : 'TOKEN'
    const withToken = daemon.proxyUrl.replace('http://', `http://demo:${token}@`)
    io.stderr.write(
      [
        '',
        `latchkey demo: proxy ${daemon.proxyUrl} (client token ${token}), admin ${daemon.adminUrl}, echo upstream http://${DEMO_ECHO.host}:${DEMO_ECHO.port}`,
        `  curl -x ${withToken} http://127.0.0.1:${DEMO_ECHO.port}/hello     # Authorization: Bearer … added`,
        `  curl -H "Proxy-Authorization: Bearer ${token}" ${daemon.proxyUrl}/echo/hello   # same, through the route`,
        `  curl -x ${withToken} http://localhost:${DEMO_ECHO.port}/hello     # X-Api-Key added from the file secret`,
        '',
      ].join('\n') + '\n',
    )
  }
  await aborted(io.signal)
  await daemon.close()
  if (echo) await new Promise((r) => echo!.close(r))
  return 0
}

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true })))
}

/** The process entry: the only place that reads process.env, handles signals and exits. */
/** The commands that run a long-lived process (a proxy under load); the others exit in milliseconds. */
const LONG_LIVED = new Set(['run', 'exec', 'injector', 'echo'])
/**
 * How far V8 lets the old generation grow past what survived the last full GC before it
 * collects again (V8's own factor is 1.1× to 4×, from its GC and allocation speeds). A proxy
 * promotes the objects of every request in flight at each young-generation GC; with V8's
 * factor its RSS under steady load climbed for the whole 100k-request soak (85 → 160 MiB),
 * with 20 % it levels off near 125 MiB at no measurable CPU cost (docs/benchmarks.md). Read
 * by V8 at every full GC, so setting it here applies in every launch path (bin, image,
 * sidecar); NODE_OPTIONS does not accept it, and a `--heap-growing-percent` given to node
 * on its command line wins.
 */
const HEAP_GROWING_FLAG = '--heap-growing-percent'
const HEAP_GROWING_PERCENT = 20

/** The V8 flag a command sets for itself, if any: none for short commands or when node was given one. */
export function heapFlagFor(command: string | undefined, execArgv: readonly string[]): string | undefined {
  if (!LONG_LIVED.has(command ?? '') || execArgv.some((a) => a.startsWith(HEAP_GROWING_FLAG))) return undefined
  return `${HEAP_GROWING_FLAG}=${HEAP_GROWING_PERCENT}`
}

export async function cli(argv: string[]): Promise<void> {
  const controller = new AbortController()
  let signals = 0
  const onSignal = (name: NodeJS.Signals) => {
    signals++
    if (signals > 1) process.exit(130) // a second signal: stop now
    process.stderr.write(`latchkey: ${name} received, draining\n`)
    controller.abort()
  }
  // `exec` forwards signals to its command and exits with its code: it owns them.
  const ownsSignals = argv[0] !== 'exec'
  if (ownsSignals) {
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
  }
  // Some SDKs drop promises (background token refreshes). One failed refresh must not take
  // the broker down; say what failed by class and code only — a message could hold a value.
  process.on('unhandledRejection', (reason) => {
    const e = reason as { name?: unknown; code?: unknown } | undefined
    process.stderr.write(`latchkey: ignored an unhandled rejection (${typeof e?.name === 'string' ? e.name : 'unknown'}${typeof e?.code === 'string' ? ` ${e.code}` : ''})\n`)
  })
  const heapFlag = heapFlagFor(argv[0], process.execArgv)
  if (heapFlag !== undefined) v8.setFlagsFromString(heapFlag)
  const io: CliIo = { env: process.env, stdout: process.stdout, stderr: process.stderr, cwd: process.cwd(), signal: controller.signal }
  let code = 0
  const program = buildProgram(io, (c) => {
    code = c
  })
  try {
    await program.parseAsync(argv, { from: 'user' })
  } catch (err) {
    if (err instanceof CommanderError) code = err.exitCode === 0 ? 0 : 2
    else {
      process.stderr.write(`latchkey: ${(err as Error).message}\n`)
      code = 1
    }
  }
  process.exitCode = code
  process.off('SIGTERM', onSignal)
  process.off('SIGINT', onSignal)
  // Let stdout drain; timers are unref'd, so the process ends on its own.
  setTimeout(() => process.exit(code), 200).unref()
}
