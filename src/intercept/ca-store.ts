import { randomBytes, X509Certificate } from 'node:crypto'
import { chmod, link, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises'
import { isIPv4 } from 'node:net'
import path from 'node:path'
import { getCACertificates } from 'node:tls'
import { ConfigError } from '../errors.ts'
import type { HostPattern } from '../binding/host-pattern.ts'
import { CertificateAuthority, normalScope, type CaScope } from './certificate-authority.ts'

/**
 * Lifetime of a CA latchkey generates itself: a year, replaced at start once less than a third
 * is left. Shorter would make clients that loaded the bundle restart more often; the name
 * constraints already limit what a leaked key can vouch for to the bound hosts.
 */
const GENERATED_CA_LIFETIME_MS = 365 * 86_400_000
/** latchkey's own CA is replaced at start when it has less than this left. */
const RENEW_OWN_CA_MS = 122 * 86_400_000
/** Warn when the CA has less than this left. */
const EXPIRY_WARNING_MS = 30 * 86_400_000
/**
 * The certificate and the bundle are read by the app, which may run as another user (a
 * second container sharing the volume). Set explicitly: a mode given at creation passes
 * through the umask, and under umask 077 it would become 0600 / 0700.
 */
const PUBLIC_FILE_MODE = 0o644
const PUBLIC_DIR_MODE = 0o755

/** The files of one interception CA. */
export interface CaFiles {
  readonly dir: string
  /** The public CA certificate (mode 0644): what clients trust. */
  readonly certFile: string
  /**
   * The private key (mode 0600). It also holds the certificate, so key and certificate are
   * created in one atomic step and can never belong to two different CAs.
   */
  readonly keyFile: string
  /**
   * System roots + the CA (mode 0644). `SSL_CERT_FILE` / `REQUESTS_CA_BUNDLE` / `CURL_CA_BUNDLE`
   * replace a client's whole trust store, so they must point here, not at `certFile`.
   */
  readonly bundleFile: string
}

export interface LoadedCa {
  readonly ca: CertificateAuthority
  readonly files: CaFiles
  /** Where the certificate and the bundle were also written for the app (`intercept.publicCaFile`). */
  readonly publicFiles: { readonly certFile: string; readonly bundleFile: string } | undefined
  /** True when this call generated the CA (first start, or a rotation). */
  readonly created: boolean
  /** True when this call replaced a CA whose name constraints no longer matched the bound hosts. */
  readonly rotated: boolean
  /** Things worth a warning line (loose key file mode, CA close to expiry). */
  readonly warnings: readonly string[]
}

export interface CaStoreOptions {
  /** `intercept.caDir` (absolute). */
  caDir: string
  /** `intercept.publicCaFile` (absolute), if set. */
  publicCaFile?: string | undefined
  /** Leaf lifetime: a CA that expires sooner than one leaf would live is refused. */
  leafTtlMs: number
  /** The names the CA may vouch for: the hosts credentials are bound to (`caScopeFor`). */
  scope: CaScope
}

/**
 * The CA's name constraints for a set of credentials: each exact host permits itself (and,
 * as X.509 has it, the names under it), each `*.suffix` the names under `suffix` (a
 * leading-dot subtree, so not `suffix` itself), each IP literal that one address. Ports play
 * no part: a certificate names hosts, not ports.
 */
export function caScopeFor(credentials: Iterable<{ readonly patterns: readonly HostPattern[] }>): CaScope {
  const dns: string[] = []
  const ip: string[] = []
  for (const c of credentials) {
    for (const p of c.patterns) {
      if (p.wildcard) dns.push(`.${p.host}`)
      else if (p.host.startsWith('[')) ip.push(p.host.slice(1, -1))
      else if (isIPv4(p.host)) ip.push(p.host)
      else dns.push(p.host)
    }
  }
  return normalScope({ dns, ip })
}

function sameScope(a: CaScope | undefined, b: CaScope): boolean {
  return a !== undefined && JSON.stringify(normalScope(a)) === JSON.stringify(normalScope(b))
}

export function caFiles(caDir: string): CaFiles {
  return {
    dir: caDir,
    certFile: path.join(caDir, 'ca.pem'),
    keyFile: path.join(caDir, 'ca-key.pem'),
    bundleFile: path.join(caDir, 'ca-bundle.pem'),
  }
}

/** `/shared/latchkey-ca.pem` → `/shared/latchkey-ca-bundle.pem`. */
export function bundlePathFor(certFile: string): string {
  const ext = path.extname(certFile)
  const base = ext === '.pem' || ext === '.crt' ? certFile.slice(0, -ext.length) : certFile
  return `${base}-bundle.pem`
}

/**
 * The trust bundle written next to the CA: Node's bundled Mozilla roots and the operating
 * system's store (deduplicated), then the CA. A client pointed at it still trusts every
 * public server, and trusts latchkey's leaf certificates.
 */
export function trustBundle(caPem: string): string {
  const roots = new Set<string>()
  for (const kind of ['bundled', 'system'] as const) {
    try {
      for (const pem of getCACertificates(kind)) roots.add(pem.trim())
    } catch {
      // No readable system store: the bundled roots are still there.
    }
  }
  return [...roots].join('\n') + '\n' + caPem.trim() + '\n'
}

/**
 * Load the interception CA from `caDir`, or create it there. The directory is made mode
 * 0700 when latchkey creates it, the key file 0600; the certificate and the trust bundle
 * (0644, whatever the umask) are rewritten on every start (also to `publicCaFile` when set,
 * whose directory is made 0755 when latchkey creates it), so a deleted, stale or unreadable
 * public copy heals itself. Problems are `ConfigError`s naming `intercept.caDir` /
 * `intercept.publicCaFile`.
 */
export async function loadOrCreateCa(o: CaStoreOptions): Promise<LoadedCa> {
  const files = caFiles(o.caDir)
  const warnings: string[] = []
  try {
    await mkdir(files.dir, { recursive: true, mode: 0o700 })
  } catch (err) {
    throw caError('intercept.caDir', `cannot create ${files.dir} (${codeOf(err)})`)
  }
  await checkDir(files.dir, warnings)

  let created = false
  let rotated = false
  let pair = await readPair(files)
  const generate = () => CertificateAuthority.create({ commonName: 'latchkey interception CA', lifetimeMs: GENERATED_CA_LIFETIME_MS, scope: o.scope })
  if (!pair) {
    const fresh = await generate()
    created = await createKeyFile(files.keyFile, fresh.keyPem + fresh.certPem)
    // Another process may have won the race: everyone uses the file that exists.
    pair = created ? { cert: fresh.certPem, key: fresh.keyPem, own: true } : await readPair(files)
    if (!pair) throw caError('intercept.caDir', `${files.keyFile} could not be read after it was created`)
  } else {
    const mode = (await stat(files.keyFile)).mode
    if ((mode & 0o077) !== 0) warnings.push(`interception CA key ${files.keyFile} is readable by other users (mode ${(mode & 0o777).toString(8)}); chmod 600`)
  }

  let ca = await loadPair(pair, files)
  const rescoped = pair.own && !sameScope(ca.scope, o.scope)
  const ageing = pair.own && !rescoped && ca.notAfter.getTime() - Date.now() < RENEW_OWN_CA_MS
  if (rescoped || ageing) {
    // latchkey's own CA, made for another set of bound hosts (or before CAs were constrained),
    // or with less than a third of its year left: a new one replaces it, and the bundle files
    // below are rewritten to trust the new one.
    const fresh = await generate()
    await replaceKeyFile(files.keyFile, fresh.keyPem + fresh.certPem)
    pair = await readPair(files)
    if (!pair) throw caError('intercept.caDir', `${files.keyFile} could not be read after it was replaced`)
    ca = await loadPair(pair, files)
    if (!sameScope(ca.scope, o.scope)) throw caError('intercept.caDir', `another latchkey sharing ${files.dir} binds other hosts and replaced the CA meanwhile; give each configuration its own intercept.caDir`)
    created = true
    rotated = true
    warnings.push(
      rescoped
        ? `the hosts credentials are bound to changed, so a new interception CA constrained to them replaced the one in ${files.dir}; the bundle files were rewritten, and a client that loaded the old bundle must restart to trust the new CA`
        : `the interception CA in ${files.dir} had less than four months left, so a new one (valid one year) replaced it; the bundle files were rewritten, and a client that loaded the old bundle must restart to trust the new CA`,
    )
  } else if (!pair.own && ca.scope === undefined) {
    warnings.push(`the interception CA in ${files.dir} was brought by the operator and carries no name constraints latchkey can read: with its key, anyone can vouch for any host to the clients that trust it; let latchkey create its own (remove ${files.keyFile} and ${files.certFile})`)
  }
  const left = ca.notAfter.getTime() - Date.now()
  if (left < o.leafTtlMs) throw caError('intercept.caDir', `the interception CA in ${files.dir} expires ${ca.notAfter.toISOString()}, before a leaf certificate would; delete ${files.dir} to let latchkey create a new one (and re-distribute the certificate)`)
  if (left < EXPIRY_WARNING_MS) warnings.push(`the interception CA in ${files.dir} expires ${ca.notAfter.toISOString()}; rotate it (delete ${files.dir}) and re-distribute the certificate`)

  const bundle = trustBundle(ca.certPem)
  await writePublic(files.certFile, ca.certPem, 'intercept.caDir', warnings)
  await writePublic(files.bundleFile, bundle, 'intercept.caDir', warnings)
  let publicFiles: LoadedCa['publicFiles']
  if (o.publicCaFile) {
    publicFiles = { certFile: o.publicCaFile, bundleFile: bundlePathFor(o.publicCaFile) }
    await makePublicDir(path.dirname(o.publicCaFile))
    await writePublic(publicFiles.certFile, ca.certPem, 'intercept.publicCaFile', warnings)
    await writePublic(publicFiles.bundleFile, bundle, 'intercept.publicCaFile', warnings)
  }
  return { ca, files, publicFiles, created, rotated, warnings }
}

async function loadPair(pair: { cert: string; key: string }, files: CaFiles): Promise<CertificateAuthority> {
  try {
    return await CertificateAuthority.load(pair.cert, pair.key)
  } catch {
    throw caError('intercept.caDir', `${files.keyFile} does not hold a usable ECDSA P-256 CA (a PKCS#8 "PRIVATE KEY" and its "CERTIFICATE"); delete ${files.dir} to let latchkey create a new one`)
  }
}

/** Read the key file (and the certificate: from the key file, else `ca.pem`). undefined when there is no key file. */
async function readPair(files: CaFiles): Promise<{ cert: string; key: string; own: boolean } | undefined> {
  let text: string
  try {
    text = await readFile(files.keyFile, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw caError('intercept.caDir', `cannot read ${files.keyFile} (${codeOf(err)})`)
  }
  const key = pemBlock(text, 'PRIVATE KEY')
  if (!key) throw caError('intercept.caDir', `${files.keyFile} holds no PKCS#8 "PRIVATE KEY" block`)
  let cert = pemBlock(text, 'CERTIFICATE')
  // latchkey writes key and certificate into one file; an operator's CA comes as two.
  const own = cert !== undefined
  if (!cert) {
    // A CA brought by the operator: key and certificate in two files.
    try {
      cert = pemBlock(await readFile(files.certFile, 'utf8'), 'CERTIFICATE')
    } catch {
      cert = undefined
    }
  }
  if (!cert) throw caError('intercept.caDir', `no CA certificate: put it in ${files.keyFile} (after the key) or in ${files.certFile}`)
  try {
    if (!new X509Certificate(cert).ca) throw new Error('not a CA')
  } catch {
    throw caError('intercept.caDir', `the certificate for ${files.keyFile} is not a CA certificate (basicConstraints CA:TRUE)`)
  }
  return { cert, key, own }
}

function pemBlock(text: string, label: string): string | undefined {
  const m = new RegExp(`-----BEGIN ${label}-----[A-Za-z0-9+/=\\s]+-----END ${label}-----`).exec(text)
  return m ? m[0] + '\n' : undefined
}

/** Create the key file without ever overwriting one: write a temp file (0600), hard-link it into place. */
async function createKeyFile(file: string, content: string): Promise<boolean> {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`
  try {
    await writeFile(tmp, content, { mode: 0o600, flag: 'wx' })
    await link(tmp, file)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw caError('intercept.caDir', `cannot write ${file} (${codeOf(err)})`)
  } finally {
    await unlink(tmp).catch(() => undefined)
  }
}

/** Replace the key file in one step (temp file 0600, then rename over it), so no reader sees half of it. */
async function replaceKeyFile(file: string, content: string): Promise<void> {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`
  try {
    await writeFile(tmp, content, { mode: 0o600, flag: 'wx' })
    await rename(tmp, file)
  } catch (err) {
    throw caError('intercept.caDir', `cannot replace ${file} (${codeOf(err)})`)
  } finally {
    await unlink(tmp).catch(() => undefined)
  }
}

/**
 * Write a public file (0644) through a temp file and rename, so readers never see half of it.
 * A file that already holds `content` is left in place; a failed chmod of it is not fatal.
 */
async function writePublic(file: string, content: string, at: string, warnings: string[]): Promise<void> {
  try {
    const current = await readFile(file, 'utf8').catch(() => undefined)
    if (current === content) {
      // The same content, perhaps written under a strict umask by an earlier start.
      const mode = (await stat(file)).mode & 0o777
      if (mode !== PUBLIC_FILE_MODE) {
        try {
          await chmod(file, PUBLIC_FILE_MODE)
        } catch (err) {
          // Owned by someone else (an operator's root-owned 0444 copy): the content is right,
          // so start. Only a copy other users cannot read is worth a warning.
          if ((mode & 0o444) !== 0o444) warnings.push(`${at} ${file} already holds the right content but is mode ${mode.toString(8)}, and it cannot be changed to 644 (${codeOf(err)}); clients running as other users may not be able to read it`)
        }
      }
      return
    }
    const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`
    try {
      await writeFile(tmp, content, { mode: PUBLIC_FILE_MODE })
      await chmod(tmp, PUBLIC_FILE_MODE)
      await rename(tmp, file)
    } finally {
      await unlink(tmp).catch(() => undefined)
    }
  } catch (err) {
    throw caError(at, `cannot write ${file} (${codeOf(err)})`)
  }
}

/** The directory of `publicCaFile`: each level latchkey creates is 0755; an existing one is left as it is. */
async function makePublicDir(dir: string): Promise<void> {
  let first: string | undefined
  try {
    first = await mkdir(dir, { recursive: true, mode: PUBLIC_DIR_MODE })
  } catch {
    return // the write that follows reports it, naming intercept.publicCaFile
  }
  if (first === undefined) return
  for (let d = dir; ; d = path.dirname(d)) {
    await chmod(d, PUBLIC_DIR_MODE).catch(() => undefined)
    if (d === first || path.dirname(d) === d) break
  }
}

/** An existing directory is never chmod'ed (it may be shared on purpose); a loose one is reported. */
async function checkDir(dir: string, warnings: string[]): Promise<void> {
  try {
    const s = await stat(dir)
    if ((s.mode & 0o077) !== 0) warnings.push(`interception CA directory ${dir} is accessible to other users (mode ${(s.mode & 0o777).toString(8)}); chmod 700 (publish the certificate with intercept.publicCaFile instead)`)
  } catch {
    // stat failing right after mkdir is reported by the reads that follow.
  }
}

function caError(at: string, message: string): ConfigError {
  return new ConfigError([{ path: at, message }])
}

function codeOf(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? 'error'
}
