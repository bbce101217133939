import { CertificateAuthority, type KeyPairPem } from '../../src/intercept/certificate-authority.ts'

/** A CA generated at test time, and a helper to issue server certificates from it. */
export interface TestCa {
  caPem: string
  issue(names: string[]): Promise<KeyPairPem>
}

export async function createTestCa(): Promise<TestCa> {
  const ca = await CertificateAuthority.create({ commonName: 'latchkey test CA' })
  return { caPem: ca.certPem, issue: (names) => ca.issue(names) }
}
