import type { CompiledCredential } from '../config/load.ts'
import { CredentialMatcher } from './credential-matcher.ts'

/** Which credential a destination is bound to: the matcher plus the rule for plain http. */
export class CredentialBinding {
  readonly #matcher: CredentialMatcher<CompiledCredential>

  constructor(credentials: readonly CompiledCredential[]) {
    this.#matcher = new CredentialMatcher(credentials.map((c) => ({ name: c.name, patterns: c.patterns, value: c })))
  }

  /** The credential bound to host:port (normalised) for a connection of this kind, if any. */
  match(host: string, port: number, tls: boolean): CompiledCredential | undefined {
    const c = this.#matcher.match(host, port, tls)?.value
    // A credential is sent over plain http only when it says insecure: true.
    return c && (tls || c.insecure) ? c : undefined
  }
}
