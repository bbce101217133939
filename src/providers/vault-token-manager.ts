import { readFile } from 'node:fs/promises'
import type { Logger } from 'pino'
import { ProviderError } from '../errors.ts'
import { raceAbort } from './abortable.ts'
import { mapVaultError, VaultAbortedError } from './vault-errors.ts'

/** How latchkey logs in to Vault (`providers.<name>.auth`). */
export type VaultAuth =
  | { method: 'token'; token?: string | undefined; tokenFile?: string | undefined }
  | { method: 'approle'; roleId: string; secretId?: string | undefined; secretIdFile?: string | undefined; mount: string }
  | { method: 'kubernetes'; role: string; jwtFile: string; mount: string }

/** The slice of the node-vault client the token manager drives. */
export interface VaultAuthClient {
  token: string | undefined
  approleLogin(args: Record<string, unknown>): Promise<unknown>
  kubernetesLogin(args: Record<string, unknown>): Promise<unknown>
  tokenLookupSelf(args: Record<string, unknown>): Promise<unknown>
  tokenRenewSelf(args: Record<string, unknown>): Promise<unknown>
}

interface Lease {
  token: string
  renewable: boolean
  /** Seconds granted at login or last renewal; 0 = does not expire. */
  leaseSeconds: number
  /** Lease granted by the login itself: a renewal that returns much less has hit the max TTL. */
  loginLeaseSeconds: number
  /** Epoch ms; 0 = never. */
  expiresAt: number
}

/** Use the token up to this long before its expiry; past it, log in again first. */
const EXPIRY_MARGIN_MS = 5_000
/** Renew at this fraction of the lease (Vault's own agent renews at about 2/3). */
const RENEW_FRACTION = 2 / 3
const MIN_TIMER_MS = 1_000

/** Short leases (tests, tight policies) get a third of their length as margin instead. */
function margin(lease: Lease): number {
  return Math.min(EXPIRY_MARGIN_MS, (lease.leaseSeconds * 1000) / 3)
}

/** `raceAbort` for node-vault calls (node-vault takes no signal): an abort is a `VaultAbortedError`. */
export function raced<T>(start: () => Promise<T>, signal: AbortSignal): Promise<T> {
  return raceAbort(start, signal, () => new VaultAbortedError())
}

async function readSecretFile(file: string, what: string, where: string): Promise<string> {
  try {
    const text = (await readFile(file, 'utf8')).trim()
    if (text === '') throw new ProviderError('provider_auth_failed', `${where}: ${what} file ${file} is empty`)
    return text
  } catch (err) {
    if (err instanceof ProviderError) throw err
    const code = (err as NodeJS.ErrnoException).code
    throw new ProviderError('provider_auth_failed', `${where}: cannot read ${what} file ${file} (${code ?? 'error'})`, { providerCode: code, retryable: false })
  }
}

/**
 * Holds latchkey's Vault token in memory: logs in on first use (single flight),
 * renews it with `renew-self` before it expires, logs in again when it is not
 * renewable, when a renewal fails or hits the max TTL, and when a read reports the
 * token invalid. Timers are `unref()`'d and cleared by `close()`.
 */
export class VaultTokenManager {
  readonly #client: VaultAuthClient
  readonly #auth: VaultAuth
  readonly #envToken: string | undefined
  readonly #logger: Logger
  readonly #where: string
  #lease: Lease | undefined
  #pending: Promise<Lease> | undefined
  #timer: NodeJS.Timeout | undefined
  #closed = false

  constructor(client: VaultAuthClient, auth: VaultAuth, envToken: string | undefined, logger: Logger, where: string) {
    this.#client = client
    this.#auth = auth
    this.#envToken = envToken
    this.#logger = logger
    this.#where = where
  }

  /** A usable token, logging in first when there is none or it is about to expire. */
  async token(signal: AbortSignal): Promise<string> {
    const lease = this.#lease
    if (lease && (lease.expiresAt === 0 || lease.expiresAt - Date.now() > margin(lease))) return lease.token
    return (await raced(() => this.#login(), signal)).token
  }

  /** A read said this token is invalid: forget it (unless a newer one already replaced it). */
  invalidate(token: string): void {
    if (this.#lease?.token === token) {
      this.#lease = undefined
      this.#clearTimer()
    }
  }

  close(): void {
    this.#closed = true
    this.#clearTimer()
    this.#lease = undefined
  }

  #login(): Promise<Lease> {
    this.#pending ??= this.#doLogin().finally(() => {
      this.#pending = undefined
    })
    return this.#pending
  }

  async #doLogin(): Promise<Lease> {
    const auth = this.#auth
    // node-vault stores a login's token on the client and would send it on the next
    // login; latchkey passes its token per request instead, so the client holds none.
    this.#client.token = undefined
    let lease: Lease
    try {
      if (auth.method === 'token') {
        const token = auth.token ?? (auth.tokenFile ? await readSecretFile(auth.tokenFile, 'token', this.#where) : this.#envToken)
        if (!token) throw new ProviderError('provider_config', `${this.#where}: no Vault token (set auth.token, auth.tokenFile or VAULT_TOKEN)`, { retryable: false })
        lease = await this.#lookup(token)
      } else if (auth.method === 'approle') {
        const secretId = auth.secretId ?? (auth.secretIdFile ? await readSecretFile(auth.secretIdFile, 'AppRole secret_id', this.#where) : undefined)
        const res = await this.#client
          .approleLogin({ role_id: auth.roleId, ...(secretId === undefined ? {} : { secret_id: secretId }), mount_point: auth.mount, requestOptions: { headers: {} } })
          .catch((err: unknown) => {
            throw mapVaultError(err, 'login', 'AppRole login', this.#where)
          })
        lease = this.#fromAuth(res, 'AppRole login')
      } else {
        const jwt = await readSecretFile(auth.jwtFile, 'Kubernetes service-account token', this.#where)
        const res = await this.#client.kubernetesLogin({ role: auth.role, jwt, mount_point: auth.mount, requestOptions: { headers: {} } }).catch((err: unknown) => {
          throw mapVaultError(err, 'login', 'Kubernetes login', this.#where)
        })
        lease = this.#fromAuth(res, 'Kubernetes login')
      }
    } finally {
      this.#client.token = undefined
    }
    if (this.#closed) return lease
    this.#lease = lease
    this.#logger.debug({ event: 'vault_login', method: auth.method, leaseSeconds: lease.leaseSeconds, renewable: lease.renewable }, 'logged in to Vault')
    this.#schedule(lease)
    return lease
  }

  /** Token auth: learn the token's TTL and renewability (and that it is valid at all). */
  async #lookup(token: string): Promise<Lease> {
    let res: unknown
    try {
      res = await this.#client.tokenLookupSelf({ requestOptions: { headers: { 'X-Vault-Token': token } } })
    } catch (err) {
      const mapped = mapVaultError(err, 'lookup', 'token lookup', this.#where)
      // A valid token whose policy lacks lookup-self (unusual: `default` grants it) is still usable; its TTL is unknown.
      if (mapped.providerCode === '403 permission denied') return { token, renewable: false, leaseSeconds: 0, loginLeaseSeconds: 0, expiresAt: 0 }
      throw mapped
    }
    const data = (res as { data?: { ttl?: unknown; renewable?: unknown } } | undefined)?.data
    const ttl = typeof data?.ttl === 'number' && data.ttl > 0 ? data.ttl : 0
    return { token, renewable: data?.renewable === true, leaseSeconds: ttl, loginLeaseSeconds: ttl, expiresAt: ttl > 0 ? Date.now() + ttl * 1000 : 0 }
  }

  #fromAuth(res: unknown, what: string): Lease {
    const a = (res as { auth?: { client_token?: unknown; lease_duration?: unknown; renewable?: unknown } } | undefined)?.auth
    if (typeof a?.client_token !== 'string' || a.client_token === '') {
      throw new ProviderError('provider_auth_failed', `${this.#where}: ${what}: Vault's answer holds no token`, { retryable: false })
    }
    const ttl = typeof a.lease_duration === 'number' && a.lease_duration > 0 ? a.lease_duration : 0
    return { token: a.client_token, renewable: a.renewable === true, leaseSeconds: ttl, loginLeaseSeconds: ttl, expiresAt: ttl > 0 ? Date.now() + ttl * 1000 : 0 }
  }

  #schedule(lease: Lease): void {
    this.#clearTimer()
    if (this.#closed || lease.leaseSeconds === 0) return
    const delay = Math.max(MIN_TIMER_MS, lease.leaseSeconds * 1000 * RENEW_FRACTION)
    this.#timer = setTimeout(() => void this.#refresh(lease), delay)
    this.#timer.unref()
  }

  #clearTimer(): void {
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = undefined
  }

  /** Timer: renew when the token is renewable and below its max TTL, else log in again. */
  async #refresh(lease: Lease): Promise<void> {
    this.#timer = undefined
    if (this.#closed || this.#lease !== lease) return
    // A renewal that granted much less than the login did has hit the max TTL: renewing cannot extend it.
    const capped = lease.leaseSeconds < lease.loginLeaseSeconds / 2
    if (lease.renewable && !capped) {
      try {
        const res = await this.#client.tokenRenewSelf({ requestOptions: { headers: { 'X-Vault-Token': lease.token } } })
        this.#client.token = undefined
        const a = (res as { auth?: { lease_duration?: unknown; renewable?: unknown } } | undefined)?.auth
        const ttl = typeof a?.lease_duration === 'number' ? a.lease_duration : 0
        if (this.#closed || this.#lease !== lease) return
        if (ttl > 0) {
          const renewed: Lease = { ...lease, renewable: a?.renewable !== false, leaseSeconds: ttl, expiresAt: Date.now() + ttl * 1000 }
          this.#lease = renewed
          this.#logger.debug({ event: 'vault_token_renewed', leaseSeconds: ttl }, 'renewed the Vault token')
          this.#schedule(renewed)
          return
        }
      } catch (err) {
        this.#client.token = undefined
        const mapped = mapVaultError(err, 'renew', 'token renewal', this.#where)
        this.#logger.warn({ event: 'vault_token_renew_failed', code: mapped.code, providerCode: mapped.providerCode }, 'Vault token renewal failed; logging in again')
      }
    }
    if (this.#closed || this.#lease !== lease) return
    try {
      await this.#login()
    } catch (err) {
      const mapped = mapVaultError(err, 'login', 'login', this.#where)
      this.#logger.warn({ event: 'vault_login_failed', code: mapped.code, providerCode: mapped.providerCode }, 'Vault login failed; the next read will try again')
      // Keep a still-valid token and try again later; an expired one is dropped so the next read logs in.
      const remaining = lease.expiresAt - Date.now()
      if (this.#lease === lease && remaining > margin(lease) && !this.#closed) {
        this.#timer = setTimeout(() => void this.#refresh(lease), Math.max(MIN_TIMER_MS, Math.min(30_000, remaining / 3)))
        this.#timer.unref()
      } else if (this.#lease === lease) {
        this.#lease = undefined
      }
    }
  }
}

