import type { Writable } from 'node:stream'

/**
 * What a CLI command gets from the entry point: the environment (only `main.ts` reads
 * `process.env`), the output streams, and the working directory. Commands never call
 * `process.exit`; they return an exit code.
 */
export interface CliIo {
  env: Readonly<Record<string, string | undefined>>
  stdout: Writable
  stderr: Writable
  cwd: string
  /** Aborted on SIGTERM/SIGINT: long-running commands drain and return. */
  signal: AbortSignal
}
