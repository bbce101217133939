import { spawn, type StdioOptions } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { constants, tmpdir } from 'node:os'
import path from 'node:path'
import { Command, Option } from 'commander'
import type { Config } from '../config/load.ts'
import type { LogLevel } from '../config/schema.ts'
import { startDaemon, type Daemon } from '../daemon.ts'
import type { Interceptor } from '../intercept/interceptor.ts'
import { findConfig, formatIssues, loadFrom } from './config-source.ts'
import type { CliIo } from './io.ts'

/** Signals passed on to the command; the command decides when to stop, latchkey follows. */
const FORWARDED: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP']

/**
 * Variables that hold provider credentials latchkey itself uses, by provider type. The
 * command runs without them: it should reach secrets only through latchkey. Identifiers
 * that are not secret (VAULT_ADDR, AWS_REGION, GOOGLE_APPLICATION_CREDENTIALS — a path)
 * stay.
 */
const PROVIDER_SECRET_VARS: Readonly<Record<string, readonly string[]>> = {
  vault: ['VAULT_TOKEN'],
  aws: ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN'],
  azure: ['AZURE_CLIENT_SECRET', 'AZURE_CLIENT_CERTIFICATE_PASSWORD', 'AZURE_PASSWORD'],
}

/** Loopback only: everything else goes through latchkey. */
const NO_PROXY = 'localhost,127.0.0.1,::1'

export interface ChildEnvInput {
  /** latchkey's own environment. */
  parent: Readonly<Record<string, string | undefined>>
  config: Config
  /** The config file's text, for the `${env:NAME}` references it makes. */
  configText: string | undefined
  proxyUrl: string
  /** The interception CA files, when interception is on. */
  ca: { certFile: string; bundleFile: string } | undefined
}

/**
 * The command's environment: latchkey's, minus every variable latchkey reads a secret from
 * (each `env` provider credential's variable, each `${env:NAME}` of the config, the provider
 * credential variables above), plus the proxy and CA variables.
 */
export function childEnv(i: ChildEnvInput): { env: Record<string, string>; removed: string[] } {
  const remove = new Set<string>()
  for (const c of Object.values(i.config.credentials)) {
    const p = i.config.providers[c.provider]
    if (p?.type === 'env') remove.add(String(p.options.prefix ?? '') + c.ref)
  }
  for (const p of Object.values(i.config.providers)) for (const name of PROVIDER_SECRET_VARS[p.type] ?? []) remove.add(name)
  for (const m of (i.configText ?? '').matchAll(/\$\{env:([^}]*)\}/g)) remove.add(m[1] as string)

  const env: Record<string, string> = {}
  const removed: string[] = []
  for (const [k, v] of Object.entries(i.parent)) {
    if (v === undefined) continue
    if (remove.has(k)) removed.push(k)
    else env[k] = v
  }
  Object.assign(env, {
    HTTP_PROXY: i.proxyUrl,
    HTTPS_PROXY: i.proxyUrl,
    http_proxy: i.proxyUrl,
    https_proxy: i.proxyUrl,
    NO_PROXY,
    no_proxy: NO_PROXY,
    // Node 24's fetch and http honour HTTP(S)_PROXY only with this.
    NODE_USE_ENV_PROXY: '1',
    LATCHKEY_PROXY_URL: i.proxyUrl,
  })
  if (i.ca) {
    // SSL_CERT_FILE / REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace the client's trust store: the bundle keeps the public roots.
    Object.assign(env, { SSL_CERT_FILE: i.ca.bundleFile, REQUESTS_CA_BUNDLE: i.ca.bundleFile, CURL_CA_BUNDLE: i.ca.bundleFile, NODE_EXTRA_CA_CERTS: i.ca.certFile })
  }
  return { env, removed: removed.sort() }
}

/** `latchkey exec [-c FILE] -- CMD ...` */
export function execCommand(io: CliIo, setCode: (code: number) => void): Command {
  return new Command('exec')
    .description("run CMD with latchkey in-process on loopback and HTTP(S)_PROXY, NO_PROXY and the CA variables set; exits with CMD's code")
    .usage('[options] -- CMD [ARGS...]')
    .option('-c, --config <file>', 'config file (YAML or JSON)')
    .option('--no-intercept', 'do not turn on TLS interception (with a throw-away CA) when the config leaves it off')
    .addOption(new Option('--log-level <level>', "latchkey's log level (lines go to stderr)").choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('warn'))
    .argument('<cmd...>', 'the command and its arguments (after --)')
    .action(async (cmd: string[], o: { config?: string; intercept: boolean; logLevel: LogLevel }) => setCode(await runExec(io, cmd, o)))
}

async function runExec(io: CliIo, cmd: string[], o: { config?: string; intercept: boolean; logLevel: LogLevel }): Promise<number> {
  const source = findConfig(o.config, io)
  const loaded = loadFrom(source, io)
  if (!loaded.ok) {
    io.stderr.write(formatIssues(loaded.issues))
    return 2
  }
  const config = loaded.config
  // Interception with a CA made for this run only, unless the config has its own CA or there is nothing to inject.
  const throwaway = !config.intercept.enabled && o.intercept && Object.keys(config.credentials).length > 0
  const tempDir = throwaway ? await mkdtemp(path.join(tmpdir(), 'latchkey-exec-')) : undefined
  const intercept = config.intercept.enabled || throwaway
  const execConfig: Config = Object.freeze({
    ...config,
    listen: Object.freeze({ host: '127.0.0.1', port: 0 }),
    admin: Object.freeze({ ...config.admin, listen: Object.freeze({ host: '127.0.0.1', port: 0 }) }),
    log: Object.freeze({ level: o.logLevel }),
    intercept: Object.freeze({ ...config.intercept, enabled: intercept, ...(tempDir ? { caDir: path.join(tempDir, 'ca'), publicCaFile: undefined } : {}) }),
  })

  let daemon: Daemon | undefined
  let interceptor: Interceptor | undefined
  const cleanup = async () => {
    await Promise.allSettled([interceptor?.close(2000), daemon?.close(2000)])
    if (tempDir) await rm(tempDir, { recursive: true, force: true })
  }
  try {
    daemon = await startDaemon(
      { config: execConfig, env: io.env, logStream: io.stderr, processMetrics: false, waitReady: true },
      // Loaded on use: the X.509 code is not needed by commands that do not intercept.
      intercept ? { interceptor: async (broker, forwarder) => (interceptor = await (await import('../intercept/interceptor.ts')).createInterceptor(broker, forwarder)) } : {},
    )
  } catch (err) {
    io.stderr.write(`latchkey exec: cannot start latchkey: ${(err as Error).message}\n`)
    await cleanup()
    return 1
  }
  const missing = daemon.notReady()
  if (missing.length > 0) io.stderr.write(`latchkey exec: warning: no value yet for ${missing.join(', ')}; requests needing them may fail\n`)

  const { env } = childEnv({
    parent: io.env,
    config,
    configText: source.kind === 'file' ? readText(source.path) : undefined,
    proxyUrl: daemon.proxyUrl,
    ca: interceptor ? { certFile: interceptor.caFiles.certFile, bundleFile: interceptor.caFiles.bundleFile } : undefined,
  })
  try {
    return await runChild(io, cmd, env)
  } finally {
    await cleanup()
  }
}

/** Run the command; resolve with its exit code (128 + n for a signal, 127 when it cannot start). */
function runChild(io: CliIo, cmd: string[], env: Record<string, string>): Promise<number> {
  return new Promise((resolve) => {
    const [file, ...args] = cmd as [string, ...string[]]
    // Our own stdout/stderr are handed over as they are (a terminal stays a terminal); other streams are piped.
    const stdio: StdioOptions = ['inherit', io.stdout === process.stdout ? 'inherit' : 'pipe', io.stderr === process.stderr ? 'inherit' : 'pipe']
    const child = spawn(file, args, { env, cwd: io.cwd, stdio })
    child.stdout?.pipe(io.stdout, { end: false })
    child.stderr?.pipe(io.stderr, { end: false })
    // The CLI's entry point owns signals in general; while the command runs they are passed on to it.
    const forward = (signal: NodeJS.Signals) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    }
    for (const s of FORWARDED) process.on(s, forward)
    const done = (code: number) => {
      for (const s of FORWARDED) process.off(s, forward)
      resolve(code)
    }
    child.once('error', (err: NodeJS.ErrnoException) => {
      io.stderr.write(`latchkey exec: cannot run ${file} (${err.code ?? err.message})\n`)
      done(err.code === 'ENOENT' ? 127 : 126)
    })
    child.once('close', (code, signal) => done(signal ? 128 + (constants.signals[signal] ?? 0) : (code ?? 1)))
  })
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
}
