import { existsSync } from 'node:fs'
import path from 'node:path'
import type { ConfigIssue } from '../errors.ts'
import { configFromEnv, envModeRequested } from '../config/env-mode.ts'
import { loadConfigFile, type LoadResult } from '../config/load.ts'
import type { CliIo } from './io.ts'

export type ConfigSource = { kind: 'file'; path: string } | { kind: 'env' } | { kind: 'none' }

/** design.md order: `-c FILE`, else `$LATCHKEY_CONFIG`, else `./latchkey.yaml`, else env-only mode. */
export function findConfig(flag: string | undefined, io: CliIo): ConfigSource {
  if (flag) return { kind: 'file', path: path.resolve(io.cwd, flag) }
  if (io.env.LATCHKEY_CONFIG) return { kind: 'file', path: path.resolve(io.cwd, io.env.LATCHKEY_CONFIG) }
  const local = path.resolve(io.cwd, 'latchkey.yaml')
  if (existsSync(local)) return { kind: 'file', path: local }
  if (envModeRequested(io.env)) return { kind: 'env' }
  return { kind: 'none' }
}

export function loadFrom(source: ConfigSource, io: CliIo): LoadResult {
  if (source.kind === 'file') return loadConfigFile(source.path, io.env)
  if (source.kind === 'env') return configFromEnv(io.env, io.cwd)
  return {
    ok: false,
    issues: [
      {
        path: '',
        message: 'no configuration: pass -c FILE, set LATCHKEY_CONFIG, create ./latchkey.yaml, or use env-only mode (LATCHKEY_ALLOWED_HOSTS + LATCHKEY_SECRET); `latchkey run --demo` runs the built-in local example',
      },
    ],
  }
}

export function formatIssues(issues: readonly ConfigIssue[]): string {
  return `invalid configuration (${issues.length} problem${issues.length === 1 ? '' : 's'}):\n` + issues.map((i) => `  - ${i.path || '(root)'}: ${i.message}`).join('\n') + '\n'
}
