import { z } from 'zod'
import { parseDuration } from './duration.ts'

/** A duration (`500ms`, `30s`, `5m`, `1h`, or seconds) parsed to milliseconds at load. */
export const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDuration(v)
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `invalid duration ${JSON.stringify(v)}: use 500ms, 30s, 5m, 1h or a number of seconds` })
    return z.NEVER
  }
  return ms
})

/** A path to a file (resolved against the config file's directory by the loader). */
export const filePath = z.string().min(1)
