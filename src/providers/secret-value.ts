import { createHash } from 'node:crypto'
import { inspect } from 'node:util'

const REDACTED = '[REDACTED]'

/**
 * A secret in transit. Its value is held in a private field: `JSON.stringify`,
 * `util.inspect`, template strings and pino all print `[REDACTED]`. Only the
 * injection step (and the redaction scrubber, which must know what to hide) call
 * `reveal()`.
 */
export class SecretValue {
  readonly #value: string
  #fingerprint: string | undefined
  /** The provider's version id for this value, when it has one (not secret). */
  readonly version: string | undefined
  /**
   * For a value with its own lifetime (a minted access token): how long the cache serves it
   * (`ttlMs`, instead of the credential's TTL) and how long it is usable at all (`usableMs`:
   * never served stale past that). Not secret.
   */
  readonly expiry: { readonly ttlMs: number; readonly usableMs: number } | undefined

  constructor(value: string, version?: string, expiry?: { ttlMs: number; usableMs: number }) {
    this.#value = value
    this.version = version
    this.expiry = expiry
  }

  reveal(): string {
    return this.#value
  }

  /** `sha256:` + 8 hex of the value's hash: lets a human tell two values apart. */
  fingerprint(): string {
    // Cached: the audit record names the value of every credentialed request.
    return (this.#fingerprint ??= fingerprint(this.#value))
  }

  equals(other: SecretValue | undefined): boolean {
    return other !== undefined && other.#value === this.#value
  }

  toJSON(): string {
    return REDACTED
  }

  toString(): string {
    return REDACTED
  }

  [inspect.custom](): string {
    return `SecretValue(${REDACTED})`
  }
}

export function fingerprint(value: string): string {
  return 'sha256:' + createHash('sha256').update(value, 'utf8').digest('hex').slice(0, 8)
}
