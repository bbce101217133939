import { Command, InvalidArgumentError, Option } from 'commander'
import { pino } from 'pino'
import { parseQuantity } from '../injector/quantity.ts'
import { DEFAULT_SIDECAR_OPTIONS, type SidecarOptions } from '../injector/sidecar.ts'
import type { CliIo } from './io.ts'

interface InjectorFlags {
  listen: string
  tlsCert: string
  tlsKey: string
  sidecarImage?: string
  imagePullPolicy: SidecarOptions['imagePullPolicy']
  proxyPort: number
  adminPort: number
  appNoProxy: string
  cpuRequest: string
  memoryRequest: string
  memoryLimit: string
  cpuLimit?: string
  certCheckInterval: number
  logLevel: string
}

/**
 * `latchkey injector`: the mutating admission webhook that adds the latchkey sidecar to pods
 * annotated `latchkey.dev/inject: "true"`. Runs until `io.signal` aborts. Flags fall back to
 * `LATCHKEY_INJECTOR_*` variables so the Deployment can set them either way.
 */
export function injectorCommand(io: CliIo): Command {
  const env = io.env
  return new Command('injector')
    .description('run the mutating admission webhook that injects the latchkey sidecar into annotated pods')
    .addOption(new Option('--listen <host:port>', 'HTTPS listen address').default(env.LATCHKEY_INJECTOR_LISTEN ?? '0.0.0.0:8443'))
    .addOption(new Option('--tls-cert <file>', 'serving certificate (PEM), re-read when it changes').default(env.LATCHKEY_INJECTOR_TLS_CERT ?? '/etc/latchkey-injector/tls/tls.crt'))
    .addOption(new Option('--tls-key <file>', 'serving key (PEM)').default(env.LATCHKEY_INJECTOR_TLS_KEY ?? '/etc/latchkey-injector/tls/tls.key'))
    .addOption(new Option('--sidecar-image <image>', 'latchkey image for the injected sidecar (required)').default(env.LATCHKEY_INJECTOR_SIDECAR_IMAGE))
    .addOption(
      new Option('--image-pull-policy <policy>', 'sidecar imagePullPolicy').choices(['Always', 'IfNotPresent', 'Never']).default(DEFAULT_SIDECAR_OPTIONS.imagePullPolicy),
    )
    .addOption(new Option('--proxy-port <port>', 'the `listen` port of the sidecar config (loopback)').argParser(port).default(DEFAULT_SIDECAR_OPTIONS.proxyPort))
    .addOption(new Option('--admin-port <port>', 'the `admin.listen` port of the sidecar config (probed by the kubelet)').argParser(port).default(DEFAULT_SIDECAR_OPTIONS.adminPort))
    .addOption(new Option('--app-no-proxy <list>', 'NO_PROXY for app containers').default(DEFAULT_SIDECAR_OPTIONS.noProxy))
    .addOption(new Option('--cpu-request <q>', 'sidecar CPU request').default(DEFAULT_SIDECAR_OPTIONS.resources.requests.cpu))
    .addOption(new Option('--memory-request <q>', 'sidecar memory request').default(DEFAULT_SIDECAR_OPTIONS.resources.requests.memory))
    .addOption(new Option('--memory-limit <q>', 'sidecar memory limit').default(DEFAULT_SIDECAR_OPTIONS.resources.limits.memory))
    .addOption(new Option('--cpu-limit <q>', 'sidecar CPU limit (default: none)'))
    .addOption(new Option('--cert-check-interval <ms>', 'how often the certificate files are checked for renewal').argParser(positiveInt).default(10_000))
    .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default(env.LATCHKEY_LOG_LEVEL ?? 'info'))
    .action(async (flags: InjectorFlags, cmd: Command) => {
      if (!flags.sidecarImage) cmd.error('latchkey injector: --sidecar-image (or LATCHKEY_INJECTOR_SIDECAR_IMAGE) is required', { exitCode: 2 })
      const i = flags.listen.lastIndexOf(':')
      const listenPort = Number(flags.listen.slice(i + 1))
      if (i <= 0 || !Number.isInteger(listenPort) || listenPort < 0 || listenPort > 65535) cmd.error(`latchkey injector: --listen expects host:port, got ${flags.listen}`, { exitCode: 2 })
      // The sidecar's heap cap is derived from --memory-limit with the same parser (sidecarNodeOptions).
      const quantities = [['--cpu-request', flags.cpuRequest, 'cpu'], ['--memory-request', flags.memoryRequest, 'memory'], ['--memory-limit', flags.memoryLimit, 'memory']] as [string, string, 'cpu' | 'memory'][]
      if (flags.cpuLimit !== undefined) quantities.push(['--cpu-limit', flags.cpuLimit, 'cpu'])
      for (const [name, q, kind] of quantities) {
        try {
          parseQuantity(q, kind, name)
        } catch (err) {
          cmd.error(`latchkey injector: ${(err as Error).message}`, { exitCode: 2 })
        }
      }
      // Loaded on use: `latchkey run` registers this command but never needs the webhook code.
      const { startWebhookServer } = await import('../injector/webhook-server.ts')
      const logger = pino({ name: 'latchkey-injector', level: flags.logLevel }, io.stdout)
      const server = await startWebhookServer({
        host: flags.listen.slice(0, i).replace(/^\[|\]$/g, ''),
        port: listenPort,
        certFile: flags.tlsCert,
        keyFile: flags.tlsKey,
        certCheckIntervalMs: flags.certCheckInterval,
        logger,
        sidecar: {
          image: flags.sidecarImage as string,
          imagePullPolicy: flags.imagePullPolicy,
          proxyPort: flags.proxyPort,
          adminPort: flags.adminPort,
          noProxy: flags.appNoProxy,
          resources: { requests: { cpu: flags.cpuRequest, memory: flags.memoryRequest }, limits: { memory: flags.memoryLimit, ...(flags.cpuLimit !== undefined ? { cpu: flags.cpuLimit } : {}) } },
        },
      })
      io.stderr.write(`latchkey injector: serving ${server.url}/mutate\n`)
      await new Promise<void>((resolve) => (io.signal.aborted ? resolve() : io.signal.addEventListener('abort', () => resolve(), { once: true })))
      await server.close()
    })
}

function port(v: string): number {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgumentError('expected a port number 1-65535')
  return n
}

function positiveInt(v: string): number {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer')
  return n
}
