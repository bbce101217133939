/**
 * The library API of latchkey (`import ... from 'latchkey'`).
 *
 * - `createLatchkeyInterceptor(config, options)`: an undici interceptor that injects
 *   credentials in-process (`dispatcher.compose(interceptor)`); `latchkey/register` installs
 *   it on the global dispatcher for you.
 * - `startDaemon(options)`: the proxy and admin listeners, as `latchkey run` starts them.
 */
export { createLatchkeyInterceptor, type LatchkeyInterceptor, type LatchkeyInterceptorOptions } from './shim/interceptor.ts'
export { createBroker, type Broker } from './broker.ts'
export { startDaemon, type Daemon, type DaemonOptions } from './daemon.ts'
export { createInterceptor, type Interceptor } from './intercept/interceptor.ts'
export { compileConfig, loadConfigFile, validateConfig, type Config, type LoadResult } from './config/load.ts'
export { configFromEnv } from './config/env-mode.ts'
export { ConfigError, ERROR_CODES, LatchkeyError, ProviderError, type ErrorCode } from './errors.ts'
