import 'reflect-metadata'
import { webcrypto, X509Certificate as NodeX509 } from 'node:crypto'
import { isIP } from 'node:net'
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

export interface CaOptions {
  /** Subject common name. */
  commonName?: string
  /** Lifetime of the CA certificate in milliseconds (default 1 year). */
  lifetimeMs?: number
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
      subject: `CN=${first.length <= 64 ? first : 'latchkey leaf'}`,
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
