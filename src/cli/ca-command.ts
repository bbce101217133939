import { Command } from 'commander'
import { ConfigError } from '../errors.ts'
import { CA_FILE_VARS, caTrustEnv } from './ca-trust-env.ts'
import { findConfig, formatIssues, loadFrom } from './config-source.ts'
import type { CliIo } from './io.ts'

/**
 * `latchkey ca [-c FILE] [--pem | --env]`: the interception CA certificate (created in
 * `intercept.caDir` when missing, like `latchkey run` would) and the variables that make
 * clients trust it. `--env` prints only `export` lines (for `eval "$(latchkey ca --env)"`),
 * `--pem` only the certificate.
 */
export function caCommand(io: CliIo, setCode: (code: number) => void): Command {
  return new Command('ca')
    .description('print the TLS interception CA certificate and the environment lines that make clients trust it')
    .option('-c, --config <file>', 'config file')
    .option('--pem', 'print only the certificate')
    .option('--env', 'print only the export lines')
    .action(async (o: { config?: string; pem?: boolean; env?: boolean }) => {
      const r = loadFrom(findConfig(o.config, io), io)
      if (!r.ok) {
        io.stderr.write(formatIssues(r.issues))
        return setCode(2)
      }
      const { intercept } = r.config
      // Loaded on use, so that registering this command loads no X.509 code for `latchkey run`.
      const { caScopeFor, loadOrCreateCa } = await import('../intercept/ca-store.ts')
      let loaded
      try {
        loaded = await loadOrCreateCa({ caDir: intercept.caDir, publicCaFile: intercept.publicCaFile, leafTtlMs: intercept.leafTtl, scope: caScopeFor(Object.values(r.config.credentials)) })
      } catch (err) {
        io.stderr.write(err instanceof ConfigError ? formatIssues(err.issues) : `latchkey ca: ${(err as Error).message}\n`)
        return setCode(1)
      }
      for (const w of loaded.warnings) io.stderr.write(`warning: ${w}\n`)
      if (!intercept.enabled) io.stderr.write('note: intercept.enabled is false in this configuration; `latchkey run` will refuse CONNECT to credentialed hosts until it is true\n')
      // The app reads the published copy when there is one (a shared volume); else the files in caDir.
      const files = loaded.publicFiles ?? loaded.files
      const trust = await caTrustEnv(io.env, files)
      for (const n of trust.notes) io.stderr.write(`warning: ${n}\n`)
      const exports = [
        `# latchkey interception CA, valid until ${loaded.ca.notAfter.toISOString()}`,
        "# SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and GIT_SSL_CAINFO (git reads only this one) replace a client's whole trust store: they point at the bundle (public roots + this CA).",
        ...CA_FILE_VARS.map((name) => `export ${name}=${shellQuote(trust.env[name] as string)}`),
        '# NODE_EXTRA_CA_CERTS adds to Node\'s store: the CA alone.',
        `export NODE_EXTRA_CA_CERTS=${shellQuote(files.certFile)}`,
      ].join('\n') + '\n'
      if (o.pem) io.stdout.write(loaded.ca.certPem)
      else if (o.env) io.stdout.write(exports)
      else io.stdout.write(`# ${files.certFile}\n${loaded.ca.certPem}\n${exports}`)
      setCode(0)
    })
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:@%+=-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`
}
