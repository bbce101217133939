import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { constants, tmpdir } from 'node:os'
import path from 'node:path'
import { isatty } from 'node:tty'
import { Command, Option } from 'commander'
import type { Config } from '../config/load.ts'
import type { LogLevel } from '../config/schema.ts'
import { startDaemon, type Daemon } from '../daemon.ts'
import type { Interceptor } from '../intercept/interceptor.ts'
import { normalizeHost } from '../binding/host-pattern.ts'
import { caTrustEnv } from './ca-trust-env.ts'
import { findConfig, formatIssues, loadFrom } from './config-source.ts'
import type { CliIo } from './io.ts'

/**
 * Signals exec handles from its first step to its last, so that clean-up (closing the
 * listeners, deleting the throw-away CA key) always runs. While the command runs they are
 * passed on to it: the command decides when to stop, latchkey follows.
 */
const HANDLED: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT']
/** Signals a terminal sends to its whole foreground process group (Ctrl-C, Ctrl-\). */
const TERMINAL_SIGNALS: ReadonlySet<NodeJS.Signals> = new Set(['SIGINT', 'SIGQUIT'])

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

/**
 * With an `aws-sigv4` credential, the command gets these when it has no keys and no
 * `AWS_PROFILE` of its own left: AWS SDKs refuse to send a request they cannot sign, and
 * latchkey re-signs it anyway. They are not secrets and open nothing.
 */
export const AWS_PLACEHOLDER_KEYS: Readonly<Record<string, string>> = { AWS_ACCESS_KEY_ID: 'latchkey-placeholder', AWS_SECRET_ACCESS_KEY: 'latchkey-placeholder' }

/** Loopback only: everything else goes through latchkey. */
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1'] as const

/**
 * NO_PROXY for the command: the loopback names, minus those a credential is bound to (on any
 * port). Left in, `curl http://127.0.0.1:PORT` to a bound loopback service would bypass latchkey
 * and go out with no credential and no word. NO_PROXY has no port in most clients (curl), so the
 * other ports of such a host go through latchkey too, and follow `egress`.
 */
export function execNoProxy(config: Pick<Config, 'credentials'>): { noProxy: string; bound: string[] } {
  const boundHosts = new Set<string>()
  for (const c of Object.values(config.credentials)) for (const p of c.patterns) if (!p.wildcard) boundHosts.add(p.host)
  const bound = LOOPBACK_NAMES.filter((n) => boundHosts.has(normalizeHost(n) as string))
  return { noProxy: LOOPBACK_NAMES.filter((n) => !bound.includes(n)).join(','), bound }
}

export interface ChildEnvInput {
  /** latchkey's own environment. */
  parent: Readonly<Record<string, string | undefined>>
  config: Config
  /** The config file's text, for the `${env:NAME}` references it makes. */
  configText: string | undefined
  proxyUrl: string
  /** The CA variables (`caTrustEnv`), when interception is on. */
  caEnv: Record<string, string> | undefined
}

/**
 * The command's environment: latchkey's, minus every variable latchkey reads a secret from
 * (each `env` provider credential's variable, each `${env:NAME}` of the config, the provider
 * and default-chain credential variables above), plus the proxy and CA variables (and
 * placeholder AWS keys for a SigV4 credential).
 */
export function childEnv(i: ChildEnvInput): { env: Record<string, string>; removed: string[] } {
  const remove = new Set<string>()
  let signsAws = false
  for (const c of Object.values(i.config.credentials)) {
    const p = i.config.providers[c.provider]
    if (p?.type === 'env') remove.add(String(p.options.prefix ?? '') + c.ref)
    if (c.sigv4 !== undefined) signsAws = true
    // With no provider, a SigV4 or Azure credential uses the sidecar's own identity: the SDKs'
    // default chains read these same variables, so the command runs without them too.
    if (p === undefined && c.sigv4 !== undefined) for (const name of PROVIDER_SECRET_VARS.aws!) remove.add(name)
    if (c.mint?.kind === 'azure-access-token' && c.mint.source === undefined) for (const name of PROVIDER_SECRET_VARS.azure!) remove.add(name)
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
  const { noProxy } = execNoProxy(i.config)
  // With a proxy client token, the command's proxy URLs carry it (Basic, any user name), which
  // is how curl, Python and Node proxy agents present it.
  const proxy = i.config.proxyAuth ? withProxyToken(i.proxyUrl, i.config.proxyAuth.token) : i.proxyUrl
  Object.assign(env, {
    HTTP_PROXY: proxy,
    HTTPS_PROXY: proxy,
    http_proxy: proxy,
    https_proxy: proxy,
    NO_PROXY: noProxy,
    no_proxy: noProxy,
    // Node 24's fetch and http honour HTTP(S)_PROXY only with this.
    NODE_USE_ENV_PROXY: '1',
    LATCHKEY_PROXY_URL: proxy,
  })
  if (i.caEnv) Object.assign(env, i.caEnv)
  if (signsAws && env.AWS_ACCESS_KEY_ID === undefined && env.AWS_SECRET_ACCESS_KEY === undefined && env.AWS_PROFILE === undefined) Object.assign(env, AWS_PLACEHOLDER_KEYS)
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

type ExecOptions = { config?: string; intercept: boolean; logLevel: LogLevel }

async function runExec(io: CliIo, cmd: string[], o: ExecOptions): Promise<number> {
  // Installed before anything exists on disk: from here on, no signal can skip the clean-up.
  const relay = new SignalRelay()
  try {
    return await execWith(relay, io, cmd, o)
  } finally {
    relay.dispose()
  }
}

async function execWith(relay: SignalRelay, io: CliIo, cmd: string[], o: ExecOptions): Promise<number> {
  const source = findConfig(o.config, io)
  const loaded = loadFrom(source, io)
  if (!loaded.ok) {
    io.stderr.write(formatIssues(loaded.issues))
    return 2
  }
  const config = loaded.config
  // Interception with a CA made for this run only, unless the config has its own CA or there is nothing to inject.
  const throwaway = !config.intercept.enabled && o.intercept && Object.keys(config.credentials).length > 0
  const intercept = config.intercept.enabled || throwaway
  let tempDir: string | undefined
  let interceptor: Interceptor | undefined
  let interceptorStarting: Promise<Interceptor> | undefined
  const cleanup = async (daemon?: Daemon) => {
    // A CA still being written would race the delete below; writing it takes milliseconds.
    await interceptorStarting?.catch(() => undefined)
    await Promise.allSettled([interceptor?.close(2000), daemon?.close(2000)])
    if (tempDir) await rm(tempDir, { recursive: true, force: true, maxRetries: 3 })
  }
  const stopped = async (signal: NodeJS.Signals) => {
    await cleanup()
    io.stderr.write(`latchkey exec: ${signal} received before the command started; it was not run\n`)
    return signalExitCode(signal)
  }

  if (throwaway) tempDir = await mkdtemp(path.join(tmpdir(), 'latchkey-exec-'))
  if (relay.early) return stopped(relay.early)
  const execConfig: Config = Object.freeze({
    ...config,
    listen: Object.freeze({ host: '127.0.0.1', port: 0 }),
    admin: Object.freeze({ ...config.admin, listen: Object.freeze({ host: '127.0.0.1', port: 0 }) }),
    log: Object.freeze({ level: o.logLevel }),
    // As in the shim: the terminal is the command's, so audit records go only to a file.
    audit: Object.freeze({ ...config.audit, enabled: config.audit.enabled && config.audit.sink === 'file' }),
    intercept: Object.freeze({ ...config.intercept, enabled: intercept, ...(tempDir ? { caDir: path.join(tempDir, 'ca'), publicCaFile: undefined } : {}) }),
  })
  const starting = startDaemon(
    { config: execConfig, env: io.env, logStream: io.stderr, processMetrics: false, waitReady: true },
    // Loaded on use: the X.509 code is not needed by commands that do not intercept.
    intercept ? { interceptor: (broker, forwarder) => (interceptorStarting = import('../intercept/interceptor.ts').then(async (m) => (interceptor = await m.createInterceptor(broker, forwarder)))) } : {},
  )
  // Start-up can wait a long time (prefetch against a slow provider): a signal must not wait for it.
  const outcome = await Promise.race([starting.then((d) => ({ daemon: d }), (err: unknown) => ({ err })), relay.earlySignal.then((signal) => ({ signal }))])
  if ('signal' in outcome) {
    // The start cannot be called off; a daemon that comes up after all is closed at once (and the process exits anyway).
    starting.then((d) => d.close(0), () => undefined)
    return stopped(outcome.signal)
  }
  if ('err' in outcome) {
    io.stderr.write(`latchkey exec: cannot start latchkey: ${(outcome.err as Error).message}\n`)
    await cleanup()
    return 1
  }
  const { daemon } = outcome
  if (relay.early) {
    await daemon.close(0)
    return stopped(relay.early)
  }
  const missing = daemon.notReady()
  if (missing.length > 0) io.stderr.write(`latchkey exec: warning: no value yet for ${missing.join(', ')}; requests needing them may fail\n`)

  const { bound } = execNoProxy(config)
  if (bound.length > 0) {
    io.stderr.write(`latchkey exec: ${bound.join(', ')} ${bound.length === 1 ? 'is' : 'are'} bound to a credential, so ${bound.length === 1 ? 'it stays' : 'they stay'} out of NO_PROXY: requests to ${bound.length === 1 ? 'it' : 'them'} (any port) go through latchkey\n`)
  }
  try {
    let caEnv: Record<string, string> | undefined
    if (interceptor) {
      // Copies of inherited trust files (with latchkey's CA added) live with the run, like the throw-away CA.
      const dir = async () => (tempDir ??= await mkdtemp(path.join(tmpdir(), 'latchkey-exec-')))
      const trust = await caTrustEnv(io.env, interceptor.caFiles, dir)
      for (const n of trust.notes) io.stderr.write(`latchkey exec: ${n}\n`)
      caEnv = trust.env
    }
    const { env } = childEnv({ parent: io.env, config, configText: source.kind === 'file' ? readText(source.path) : undefined, proxyUrl: daemon.proxyUrl, caEnv })
    return await runChild(io, cmd, env, relay)
  } finally {
    await cleanup(daemon)
  }
}

function withProxyToken(proxyUrl: string, token: string): string {
  const u = new URL(proxyUrl)
  u.username = 'latchkey'
  u.password = token
  return u.href.replace(/\/$/, '')
}

/** Run the command; resolve with its exit code (128 + n for a signal, 127 when it cannot start). */
function runChild(io: CliIo, cmd: string[], env: Record<string, string>, relay: SignalRelay): Promise<number> {
  return new Promise((resolve) => {
    const [file, ...args] = cmd as [string, ...string[]]
    // Our own stdout/stderr are handed over as they are (a terminal stays a terminal); other streams are piped.
    const stdio: StdioOptions = ['inherit', io.stdout === process.stdout ? 'inherit' : 'pipe', io.stderr === process.stderr ? 'inherit' : 'pipe']
    // Not detached: the command stays in latchkey's process group, so a terminal's Ctrl-C reaches both.
    const child = spawn(file, args, { env, cwd: io.cwd, stdio })
    child.stdout?.pipe(io.stdout, { end: false })
    child.stderr?.pipe(io.stderr, { end: false })
    relay.attach(child)
    const done = (code: number) => {
      relay.detach()
      resolve(code)
    }
    child.once('error', (err: NodeJS.ErrnoException) => {
      io.stderr.write(`latchkey exec: cannot run ${file} (${err.code ?? err.message})\n`)
      done(err.code === 'ENOENT' ? 127 : 126)
    })
    child.once('close', (code, signal) => done(signal ? signalExitCode(signal) : (code ?? 1)))
  })
}

function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0)
}

/**
 * exec's signals, from its first step to its last. Before the command starts, the first
 * signal stops the start-up (clean-up runs, then exec exits 128 + n). While the command runs,
 * signals are passed on to it, except SIGINT/SIGQUIT that the terminal has already sent it.
 * After it exited, signals are ignored while clean-up finishes: the exit code stays the command's.
 *
 * The CLI entry leaves signals to `exec` (main.ts); this is the one place exec handles them.
 */
class SignalRelay {
  readonly #first = Promise.withResolvers<NodeJS.Signals>()
  readonly #handler = (signal: NodeJS.Signals) => this.#receive(signal)
  #early: NodeJS.Signals | undefined
  #child: ChildProcess | undefined
  #exited = false

  constructor() {
    for (const s of HANDLED) process.on(s, this.#handler)
  }

  /** The signal received before the command started, if any. */
  get early(): NodeJS.Signals | undefined {
    return this.#early
  }

  /** Resolves with the first signal received before the command started (never, if none). */
  get earlySignal(): Promise<NodeJS.Signals> {
    return this.#first.promise
  }

  attach(child: ChildProcess): void {
    this.#child = child
  }

  detach(): void {
    this.#child = undefined
    this.#exited = true
  }

  dispose(): void {
    for (const s of HANDLED) process.off(s, this.#handler)
  }

  #receive(signal: NodeJS.Signals): void {
    const child = this.#child
    if (child) {
      if (child.exitCode !== null || child.signalCode !== null) return
      if (TERMINAL_SIGNALS.has(signal) && terminalDelivered()) return
      child.kill(signal)
      return
    }
    if (this.#exited || this.#early !== undefined) return
    this.#early = signal
    this.#first.resolve(signal)
  }
}

/** Whether the terminal has already sent this SIGINT/SIGQUIT to the command (see `terminalForeground`). */
function terminalDelivered(): boolean {
  return terminalForeground(isatty(0), readText('/proc/self/stat'))
}

/**
 * Whether latchkey's stdin is a terminal and latchkey's process group (which the command
 * shares) is the terminal's foreground group: then a Ctrl-C or Ctrl-\ has already reached the
 * command, and sending it again would make the command see one keypress as two.
 *
 * Without /proc (macOS, the BSDs) the foreground group cannot be read, and the signal is
 * passed on: a `kill -INT <pid>` from another shell must reach the command, and the cost of
 * guessing wrong the other way is only that a Ctrl-C there arrives twice (most commands stop
 * on the first; one that counts Ctrl-Cs may take the second as "force quit").
 *
 * @param stdinIsTerminal `isatty(0)`
 * @param procStat the text of `/proc/self/stat`, undefined when it cannot be read
 */
export function terminalForeground(stdinIsTerminal: boolean, procStat: string | undefined): boolean {
  if (!stdinIsTerminal || procStat === undefined) return false
  // After "pid (comm) ": state ppid pgrp session tty_nr tpgid ...
  const fields = procStat.slice(procStat.lastIndexOf(')') + 2).split(' ')
  return fields[2] !== undefined && fields[2] === fields[5]
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
}
