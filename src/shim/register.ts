/**
 * `node --import latchkey/register app.js` (or `NODE_OPTIONS=--import=latchkey/register`).
 *
 * An entry point, like `src/cli/main.ts`: it is the one place of the shim that reads
 * `process.env` and writes to `process.stderr`. It configures latchkey from
 * `LATCHKEY_CONFIG` (a config file) or env-only mode (`LATCHKEY_ALLOWED_HOSTS`, ...) and
 * installs the interceptor on undici's global dispatcher, which Node's global `fetch` also
 * uses (undici 8 publishes it under the symbol Node 24's bundled undici reads).
 *
 * Logs are JSON lines on stderr at `warn` unless `LATCHKEY_LOG_LEVEL` says otherwise: the
 * application's own output stays readable. A config that does not load stops the process
 * at start (an app that silently runs without its credentials is harder to diagnose).
 */
import path from 'node:path'
import { EnvHttpProxyAgent, getGlobalDispatcher, setGlobalDispatcher } from 'undici'
import { configFromEnv, envModeRequested } from '../config/env-mode.ts'
import { loadConfigFile, type LoadResult } from '../config/load.ts'
import type { LogLevel } from '../config/schema.ts'
import { createLatchkeyInterceptor } from './interceptor.ts'

const INSTALLED = Symbol.for('latchkey.register')
const LEVELS: readonly string[] = ['trace', 'debug', 'info', 'warn', 'error', 'silent']

function install(): void {
  const g = globalThis as { [INSTALLED]?: true }
  if (g[INSTALLED]) return // imported twice (NODE_OPTIONS and --import): one interceptor is enough
  const env = process.env
  const cwd = process.cwd()
  let result: LoadResult
  if (env.LATCHKEY_CONFIG) result = loadConfigFile(path.resolve(cwd, env.LATCHKEY_CONFIG), env)
  else if (envModeRequested(env)) result = configFromEnv(env, cwd)
  else {
    process.stderr.write('latchkey/register: neither LATCHKEY_CONFIG nor LATCHKEY_ALLOWED_HOSTS is set; no credentials will be injected\n')
    return
  }
  if (!result.ok) {
    const lines = result.issues.map((i) => `  - ${i.path || '(root)'}: ${i.message}`).join('\n')
    throw new Error(`latchkey/register: invalid configuration (${result.issues.length} problem${result.issues.length === 1 ? '' : 's'}):\n${lines}`)
  }
  const wanted = env.LATCHKEY_LOG_LEVEL
  const logLevel = (wanted !== undefined && LEVELS.includes(wanted) ? wanted : 'warn') as LogLevel
  const latchkey = createLatchkeyInterceptor(result.config, { env, logStream: process.stderr, logLevel })
  // Importing undici 8 replaced Node's own global dispatcher, and with it the proxy support of
  // NODE_USE_ENV_PROXY=1; keep that behaviour for the hosts latchkey does not handle.
  const proxied = env.NODE_USE_ENV_PROXY === '1' && Boolean(env.HTTPS_PROXY || env.https_proxy || env.HTTP_PROXY || env.http_proxy)
  const base = proxied ? new EnvHttpProxyAgent() : getGlobalDispatcher()
  setGlobalDispatcher(base.compose(latchkey))
  g[INSTALLED] = true
}

install()
