import { createHash } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'

/**
 * Variables whose file replaces a client's whole trust store, and who reads them: OpenSSL-based
 * clients (Python's ssl and urllib, httpx, aiohttp with `trust_env`, Ruby) `SSL_CERT_FILE`,
 * requests and pip `REQUESTS_CA_BUNDLE`, curl `CURL_CA_BUNDLE`, git (libcurl, which ignores the
 * two before) only `GIT_SSL_CAINFO`. Each gets the bundle: public roots plus latchkey's CA.
 */
export const CA_FILE_VARS = ['SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO'] as const

export interface CaFiles {
  /** latchkey's CA certificate alone. */
  certFile: string
  /** The system store and Node's bundled roots, then latchkey's CA. */
  bundleFile: string
}

export interface CaTrustEnv {
  env: Record<string, string>
  /** One line per inherited variable that was not simply replaced (paths only; never file contents). */
  notes: string[]
}

/**
 * The CA variables for a client. An inherited file variable whose certificates are all in the
 * bundle (the system store, or a copy of it) is replaced by the bundle. One that names a file
 * with certificates the bundle lacks (a corporate root, a private registry's CA) is kept in
 * spirit: when `dir` is given, the client gets a copy of that file with latchkey's CA appended
 * (written there, the same copy for every variable naming that file), so it trusts exactly what
 * it trusted before plus latchkey; without `dir` it gets the bundle and a note says what was lost.
 * An unreadable inherited file is replaced by the bundle, with a note.
 */
export async function caTrustEnv(parent: Readonly<Record<string, string | undefined>>, files: CaFiles, dir?: () => Promise<string>): Promise<CaTrustEnv> {
  const env: Record<string, string> = { NODE_EXTRA_CA_CERTS: files.certFile }
  const notes: string[] = []
  const [bundleText, caText] = await Promise.all([readFile(files.bundleFile, 'utf8'), readFile(files.certFile, 'utf8')])
  const inBundle = new Set(certBodies(bundleText))
  const merged = new Map<string, string>()
  for (const name of CA_FILE_VARS) {
    env[name] = files.bundleFile
    const inherited = parent[name]
    if (inherited === undefined || inherited === '' || path.resolve(inherited) === path.resolve(files.bundleFile)) continue
    let text: string
    try {
      text = await readFile(inherited, 'utf8')
    } catch (err) {
      notes.push(`${name} was ${inherited}, which cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}); it now names the bundle`)
      continue
    }
    const bodies = certBodies(text)
    if (bodies.every((b) => inBundle.has(b))) continue
    if (!dir) {
      notes.push(`${name} is ${inherited}, which holds certificates the bundle lacks; the line below replaces it, so append latchkey's CA to that file instead if those are still needed (latchkey ca --pem >> ${inherited})`)
      continue
    }
    let copy = merged.get(inherited)
    if (copy === undefined) {
      copy = path.join(await dir(), `trust-${createHash('sha256').update(path.resolve(inherited)).digest('hex').slice(0, 12)}.pem`)
      await writeFile(copy, `${text.trimEnd()}\n${caText.trim()}\n`, { mode: 0o644 })
      merged.set(inherited, copy)
    }
    env[name] = copy
    notes.push(`${name} was ${inherited}; the command gets a copy of it with latchkey's CA appended`)
  }
  return { env, notes }
}

/** The base64 bodies of the PEM certificates in `text`, whitespace removed, for comparing files. */
function certBodies(text: string): string[] {
  return [...text.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)].map((m) => (m[1] as string).replace(/\s+/g, ''))
}
