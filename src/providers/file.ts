import { readFile, realpath, stat } from 'node:fs/promises'
import path from 'node:path'
import { z } from 'zod'
import { ProviderError } from '../errors.ts'
import type { ProviderFactory, SecretProvider } from './provider.ts'
import { SecretValue } from './secret-value.ts'

const optionsSchema = z
  .object({
    type: z.literal('file'),
    /** Directory holding one file per secret (a Kubernetes secret volume, for example). */
    dir: z.string().min(1),
    /** Strip one trailing newline (most editors and `kubectl create secret --from-file` add one). Default true. */
    trimNewline: z.boolean().default(true),
    /** Refuse files larger than this many bytes. */
    maxBytes: z.number().int().positive().default(1024 * 1024),
  })
  .strict()

/**
 * `file`: ref = file name inside `dir`. Each fetch re-reads the file, so a Kubernetes
 * secret that changes on disk (atomic `..data` symlink swap) is picked up at the next
 * TTL refresh or after a 401/403 bust. A ref may not leave `dir` (no `..`, no absolute
 * path, and symlinks are resolved and checked).
 */
export const fileProvider: ProviderFactory<typeof optionsSchema> = {
  type: 'file',
  optionsSchema,
  async create(options, ctx): Promise<SecretProvider> {
    const dir = path.resolve(options.dir)
    const warned = new Set<string>()
    return {
      type: 'file',
      async fetch(ref) {
        if (ref === '' || path.isAbsolute(ref) || ref.split(/[\\/]/).includes('..')) {
          throw new ProviderError('provider_config', `file ref ${JSON.stringify(ref)} must be a relative name inside the provider's dir`)
        }
        const target = path.join(dir, ref)
        let real: string
        try {
          real = await realpath(target)
          const realDir = await realpath(dir)
          if (real !== realDir && !real.startsWith(realDir + path.sep)) {
            throw new ProviderError('provider_config', `file ref ${JSON.stringify(ref)} resolves outside ${dir}`)
          }
          const st = await stat(real)
          if (!st.isFile()) throw new ProviderError('secret_not_found', `${target} is not a regular file`, { providerCode: 'ENOTFILE' })
          if (st.size > options.maxBytes) throw new ProviderError('invalid_secret', `${target} is larger than ${options.maxBytes} bytes`)
          if ((st.mode & 0o004) !== 0 && !warned.has(target)) {
            warned.add(target)
            ctx.logger.warn({ event: 'file_world_readable', file: target }, 'secret file is world-readable (chmod 600)')
          }
        } catch (err) {
          if (err instanceof ProviderError) throw err
          const code = (err as NodeJS.ErrnoException).code
          if (code === 'ENOENT') throw new ProviderError('secret_not_found', `secret file ${target} does not exist`, { providerCode: code })
          if (code === 'EACCES' || code === 'EPERM') throw new ProviderError('access_denied', `secret file ${target} is not readable`, { providerCode: code })
          throw new ProviderError('provider_unavailable', `cannot read secret file ${target}`, { providerCode: code, retryable: false })
        }
        let text: string
        try {
          text = await readFile(real, 'utf8')
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code
          throw new ProviderError(code === 'ENOENT' ? 'secret_not_found' : 'provider_unavailable', `cannot read secret file ${target}`, { providerCode: code, retryable: false })
        }
        if (options.trimNewline) text = text.replace(/\r?\n$/, '')
        if (text === '') throw new ProviderError('invalid_secret', `secret file ${target} is empty`)
        return new SecretValue(text)
      },
      async check() {
        try {
          const st = await stat(dir)
          return { reachable: st.isDirectory(), authenticated: true, identity: `directory ${dir}` }
        } catch {
          return { reachable: false, authenticated: false, detail: `directory ${dir} does not exist` }
        }
      },
    }
  },
}
