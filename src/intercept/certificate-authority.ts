import 'reflect-metadata'
import { webcrypto, X509Certificate as NodeX509 } from 'node:crypto'
import { isIP } from 'node:net'
import { AsnConvert } from '@peculiar/asn1-schema'
import { GeneralName, GeneralSubtree, GeneralSubtrees, id_ce_nameConstraints, NameConstraints } from '@peculiar/asn1-x509'
import * as x509 from '@peculiar/x509'

type CryptoKeyPair = webcrypto.CryptoKeyPair
const crypto = webcrypto
x509.cryptoProvider.set(crypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const

/** A PEM certificate and its PKCS#8 PEM private key. */
export interface KeyPairPem {
  cert: string
  key: string
}

/**
 * The names a CA may vouch for, as X.509 name constraints (RFC 5280 §4.2.1.10). `dns`: a
 * name permits itself and every name under it; a leading dot (`.example.com`) permits only
 * the names under it. `ip`: single addresses (IPv4, or IPv6 without brackets). A type left
 * empty is excluded outright, so the CA vouches for no name of that type at all.
 */
export interface CaScope {
  readonly dns: readonly string[]
  readonly ip: readonly string[]
}

export interface CaOptions {
  /** Subject common name. */
  commonName?: string
  /** Lifetime of the CA certificate in milliseconds (default 1 year). */
  lifetimeMs?: number
  /** Name constraints (critical); without them the CA can vouch for any name. */
  scope?: CaScope
}

export interface LeafOptions {
  /** Lifetime of the leaf in milliseconds (default 24 h). */
  lifetimeMs?: number
  /** Extended key usage: server (default) or client. */
  usage?: 'server' | 'client'
}

function toPem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`
}

function serial(): string {
  // Positive 128-bit serial (top bit cleared).
  const b = new Uint8Array(16)
  crypto.getRandomValues(b)
  b[0] = (b[0] as number) & 0x7f
  return Buffer.from(b).toString('hex')
}

/**
 * An ECDSA P-256 certificate authority that issues short-lived leaf certificates.
 * Used by TLS interception, and by the tests to make their own CA at test time.
 */
export class CertificateAuthority {
  readonly certPem: string
  readonly keyPem: string
  readonly #cert: x509.X509Certificate
  readonly #keys: CryptoKeyPair

  private constructor(cert: x509.X509Certificate, keys: CryptoKeyPair, keyPem: string) {
    this.#cert = cert
    this.#keys = keys
    this.certPem = cert.toString('pem') + '\n'
    this.keyPem = keyPem
  }

  static async create(options: CaOptions = {}): Promise<CertificateAuthority> {
    const keys = (await crypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair
    const notBefore = new Date(Date.now() - 60_000)
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: `CN=${options.commonName ?? 'latchkey CA'}`,
      notBefore,
      notAfter: new Date(notBefore.getTime() + (options.lifetimeMs ?? 365 * 86_400_000)),
      signingAlgorithm: ALG,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        ...(options.scope ? [nameConstraintsExtension(options.scope)] : []),
      ],
    })
    const keyPem = toPem(await crypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY')
    return new CertificateAuthority(cert, keys, keyPem)
  }

  /** Load a CA from PEM text (certificate and PKCS#8 key). */
  static async load(certPem: string, keyPem: string): Promise<CertificateAuthority> {
    const cert = new x509.X509Certificate(certPem)
    const der = Buffer.from(keyPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64')
    const privateKey = await crypto.subtle.importKey('pkcs8', der, ALG, true, ['sign'])
    const publicKey = await cert.publicKey.export(ALG, ['verify'])
    return new CertificateAuthority(cert, { privateKey, publicKey }, keyPem)
  }

  /** The CA certificate's notAfter. */
  get notAfter(): Date {
    return this.#cert.notAfter
  }

  /** The CA's name constraints in the form `CaOptions.scope` takes (sorted); undefined when it has none it can state. */
  get scope(): CaScope | undefined {
    const ext = this.#cert.getExtension(id_ce_nameConstraints)
    return ext ? scopeOf(ext.value) : undefined
  }

  /** Issue a leaf certificate for DNS names and/or IP literals. */
  async issue(names: readonly string[], options: LeafOptions = {}): Promise<KeyPairPem> {
    if (names.length === 0) throw new Error('a leaf certificate needs at least one name')
    const keys = (await crypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair
    const notBefore = new Date(Date.now() - 60_000)
    const sans = names.map((n) => {
      const bare = n.startsWith('[') && n.endsWith(']') ? n.slice(1, -1) : n
      return isIP(bare) ? { type: 'ip' as const, value: bare } : { type: 'dns' as const, value: n }
    })
    const first = names[0] as string
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      // OpenSSL checks a subject CN that looks like a host name against the CA's DNS constraints
      // when the leaf has no DNS SAN: an IP literal there would be refused, so it gets a plain label.
      subject: `CN=${first.length <= 64 && sans[0]?.type === 'dns' ? first : 'latchkey leaf'}`,
      issuer: this.#cert.subject,
      notBefore,
      notAfter: new Date(notBefore.getTime() + (options.lifetimeMs ?? 86_400_000)),
      signingAlgorithm: ALG,
      publicKey: keys.publicKey,
      signingKey: this.#keys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([options.usage === 'client' ? x509.ExtendedKeyUsage.clientAuth : x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension(sans, false),
        await x509.AuthorityKeyIdentifierExtension.create(this.#keys.publicKey),
      ],
    })
    const key = toPem(await crypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY')
    return { cert: cert.toString('pem') + '\n', key }
  }
}

/** Days until a PEM certificate expires (negative when expired). */
export function daysUntilExpiry(certPem: string): number {
  return (new Date(new NodeX509(certPem).validTo).getTime() - Date.now()) / 86_400_000
}

/** The whole IPv4 and IPv6 spaces, for a scope that binds no IP literal. */
const ALL_IP = ['0.0.0.0/0', '::/0']

/** A sorted, de-duplicated copy: two scopes are equal when their JSON is. */
export function normalScope(scope: CaScope): CaScope {
  const sorted = (a: readonly string[]) => [...new Set(a.map((x) => x.toLowerCase()))].sort()
  return { dns: sorted(scope.dns), ip: sorted(scope.ip) }
}

function nameConstraintsExtension(scope: CaScope): x509.Extension {
  const s = normalScope(scope)
  const subtrees = (names: GeneralName[]) => new GeneralSubtrees(names.map((base) => new GeneralSubtree({ base })))
  const permitted = [
    ...s.dns.map((d) => new GeneralName({ dNSName: d })),
    ...s.ip.map((ip) => new GeneralName({ iPAddress: `${ip}/${ip.includes(':') ? 128 : 32}` })),
  ]
  // An empty dNSName matches every DNS name (RFC 5280 §4.2.1.10, as OpenSSL, Go and NSS read it).
  const excluded = [...(s.dns.length === 0 ? [new GeneralName({ dNSName: '' })] : []), ...(s.ip.length === 0 ? ALL_IP.map((ip) => new GeneralName({ iPAddress: ip })) : [])]
  const nc = new NameConstraints({
    permittedSubtrees: permitted.length > 0 ? subtrees(permitted) : undefined,
    excludedSubtrees: excluded.length > 0 ? subtrees(excluded) : undefined,
  })
  return new x509.Extension(id_ce_nameConstraints, true, AsnConvert.serialize(nc))
}

/** Read back what `nameConstraintsExtension` wrote; undefined for constraints of another shape (an operator's CA). */
function scopeOf(der: ArrayBuffer): CaScope | undefined {
  let nc: NameConstraints
  try {
    nc = AsnConvert.parse(der, NameConstraints)
  } catch {
    return undefined
  }
  const dns: string[] = []
  const ip: string[] = []
  for (const { base } of nc.permittedSubtrees ?? []) {
    if (base.dNSName !== undefined) dns.push(base.dNSName)
    else if (base.iPAddress !== undefined && /\/(32|128)$/.test(base.iPAddress)) ip.push(base.iPAddress.replace(/\/\d+$/, ''))
    else return undefined
  }
  return normalScope({ dns, ip })
}
