import type { ConfigIssue } from '../errors.ts'
import { validateConfig, type LoadResult } from './load.ts'

/** True when env-only mode applies: no config file and `LATCHKEY_ALLOWED_HOSTS` is set. */
export function envModeRequested(env: Readonly<Record<string, string | undefined>>): boolean {
  return env.LATCHKEY_ALLOWED_HOSTS !== undefined
}

/**
 * Build the one-credential config of env-only mode (design.md table). Provider options
 * come from each provider's usual variables (VAULT_ADDR, AWS_REGION, ...), which the
 * provider reads from the env record itself.
 */
export function configFromEnv(env: Readonly<Record<string, string | undefined>>, baseDir: string): LoadResult {
  const issues: ConfigIssue[] = []
  const hosts = (env.LATCHKEY_ALLOWED_HOSTS ?? '').split(',').map((h) => h.trim()).filter(Boolean)
  if (hosts.length === 0) issues.push({ path: 'LATCHKEY_ALLOWED_HOSTS', message: 'empty: list the host patterns the credential may be sent to (comma-separated); latchkey refuses to start without an allowlist' })
  const providerType = env.LATCHKEY_PROVIDER ?? 'env'
  const ref = env.LATCHKEY_SECRET
  if (!ref) issues.push({ path: 'LATCHKEY_SECRET', message: 'not set: the reference of the secret (variable name, file name, Vault path, secret id)' })
  const auth = env.LATCHKEY_AUTH ?? 'bearer'
  let inject: Record<string, unknown>
  if (auth === 'bearer' || auth === 'basic') inject = { type: auth }
  else if (auth.startsWith('header:') && auth.length > 'header:'.length) inject = { type: 'header', header: auth.slice('header:'.length) }
  else {
    issues.push({ path: 'LATCHKEY_AUTH', message: `expected bearer, basic or header:<Name>, got ${JSON.stringify(auth)}` })
    inject = { type: 'bearer' }
  }
  if (issues.length > 0) return { ok: false, issues }

  const provider: Record<string, unknown> = { type: providerType }
  if (providerType === 'file') provider.dir = env.LATCHKEY_SECRET_DIR ?? '/var/run/secrets/latchkey'
  const credential: Record<string, unknown> = { provider: 'default', ref, hosts, inject }
  if (env.LATCHKEY_SECRET_FIELD) credential.field = env.LATCHKEY_SECRET_FIELD
  if (env.LATCHKEY_TTL) credential.ttl = env.LATCHKEY_TTL
  if (env.LATCHKEY_INSECURE === 'true') credential.insecure = true
  const raw: Record<string, unknown> = {
    providers: { default: provider },
    credentials: { default: credential },
  }
  if (env.LATCHKEY_LISTEN) raw.listen = env.LATCHKEY_LISTEN
  if (env.LATCHKEY_EXPOSED_REASON !== undefined) raw.exposed = { reason: env.LATCHKEY_EXPOSED_REASON }
  if (env.LATCHKEY_ADMIN_LISTEN) raw.admin = { listen: env.LATCHKEY_ADMIN_LISTEN }
  if (env.LATCHKEY_LOG_LEVEL) raw.log = { level: env.LATCHKEY_LOG_LEVEL }
  if (env.LATCHKEY_EGRESS) raw.egress = env.LATCHKEY_EGRESS
  const r = validateConfig(raw, { env, baseDir })
  if (r.ok) return r
  // Point at the variables, not at the synthetic config paths.
  const names: Array<[RegExp, string]> = [
    [/^credentials\.default\.hosts/, 'LATCHKEY_ALLOWED_HOSTS'],
    [/^credentials\.default\.ttl/, 'LATCHKEY_TTL'],
    [/^credentials\.default\.inject/, 'LATCHKEY_AUTH'],
    [/^credentials\.default\.field/, 'LATCHKEY_SECRET_FIELD'],
    [/^providers\.default\.type/, 'LATCHKEY_PROVIDER'],
    [/^providers\.default/, 'LATCHKEY_PROVIDER (provider options from its usual variables)'],
    [/^listen/, 'LATCHKEY_LISTEN'],
    [/^exposed/, 'LATCHKEY_EXPOSED_REASON'],
    [/^admin/, 'LATCHKEY_ADMIN_LISTEN'],
    [/^log/, 'LATCHKEY_LOG_LEVEL'],
    [/^egress/, 'LATCHKEY_EGRESS'],
  ]
  return { ok: false, issues: r.issues.map((i) => ({ path: names.find(([re]) => re.test(i.path))?.[1] ?? i.path, message: i.message })) }
}
