import { LatchkeyError } from '../errors.ts'

/** What a quantity measures: `memory` in bytes, `cpu` in cores. */
export type QuantityKind = 'memory' | 'cpu'

const SUFFIX_FACTOR: Readonly<Record<string, number>> = Object.freeze({
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
  Pi: 1024 ** 5,
  Ei: 1024 ** 6,
})

/**
 * The Kubernetes quantity grammar without a sign (a resource is never negative): a decimal
 * number, then a binary suffix (Ki…Ei), a decimal exponent (`e3`, `E-2`), or a decimal suffix
 * (m, k, M…E). The exponent is tried first, so `1E` is one exa and `1E3` is one thousand.
 */
const QUANTITY = /^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E))?$/

/**
 * The value of a Kubernetes resource quantity (`256Mi` → 268435456 bytes, `20m` → 0.02 cores),
 * for the injector's flags and the sidecar's heap cap, so both read a quantity the same way.
 * `m` is milli: for CPU that is millicores; for memory it would be thousandths of a byte, which
 * Kubernetes accepts but nobody means (`512m` is a typo for `512Mi` or `512M`), so it is refused.
 *
 * @throws LatchkeyError `config_invalid` naming `what` when `text` is not a quantity of that kind
 */
export function parseQuantity(text: string, kind: QuantityKind, what = 'quantity'): number {
  const m = QUANTITY.exec(text)
  if (!m) throw new LatchkeyError('config_invalid', `${what} ${JSON.stringify(text)} is not a Kubernetes quantity (for example ${kind === 'memory' ? '256Mi, 512M or 1Gi' : '20m, 0.5 or 2'})`)
  const [, digits, exponent, suffix = ''] = m
  if (kind === 'memory' && suffix === 'm') {
    throw new LatchkeyError('config_invalid', `${what} ${text}: "m" means thousandths of a byte in a Kubernetes quantity; write ${digits}Mi (mebibytes) or ${digits}M (megabytes)`)
  }
  const value = Number(digits) * (exponent === undefined ? (SUFFIX_FACTOR[suffix] ?? 1) : 10 ** Number(exponent))
  if (!Number.isFinite(value)) throw new LatchkeyError('config_invalid', `${what} ${text} is too large`)
  return value
}
