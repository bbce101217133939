import { startDaemon, type Daemon, type DaemonOptions } from '../../src/daemon.ts'

/** A raw daemon config (as parsed from YAML); `admin` and `log` are merged with the test defaults, not replaced. */
export type TestDaemonConfig = { admin?: Record<string, unknown>; log?: Record<string, unknown>; [key: string]: unknown }

export interface TestDaemonOptions extends Omit<DaemonOptions, 'config' | 'processMetrics'> {
  config: TestDaemonConfig
}

/**
 * `startDaemon` with the settings every in-process test daemon shares:
 * - `processMetrics: false`: a test file often runs several daemons in one process, and each
 *   would otherwise start its own collectors (event loop, GC) measuring that same process;
 * - `waitReady: true` (a test may pass `false`), so the first request does not race the prefetch;
 * - `env: {}` unless given, so nothing leaks in from the environment the tests run in;
 * - proxy and admin on `127.0.0.1:0` (loopback, a free port each), kept when the test's
 *   `admin` block adds only a token;
 * - `log.level: 'trace'` (overridable), so the canary checks see every line the daemon can write.
 * `extras` goes to `startDaemon` unchanged (an interceptor, for the TLS tests).
 */
export function startTestDaemon(opts: TestDaemonOptions, extras?: Parameters<typeof startDaemon>[1]): Promise<Daemon> {
  const { config, env, waitReady, ...rest } = opts
  return startDaemon(
    {
      ...rest,
      env: env ?? {},
      waitReady: waitReady ?? true,
      processMetrics: false,
      config: {
        listen: '127.0.0.1:0',
        ...config,
        admin: { listen: '127.0.0.1:0', ...config.admin },
        log: { level: 'trace', ...config.log },
      },
    },
    extras,
  )
}
