import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { test } from 'node:test'
import { ROOT } from '../helpers/child.ts'

const X509 = /node_modules\/(@peculiar\/|asn1js\/|pkijs\/|tsyringe\/|reflect-metadata\/)|\/src\/intercept\//
const CLOUD = /node_modules\/(@aws-sdk|@smithy|@azure|@google-cloud|google-gax|google-auth-library|@grpc|node-vault|axios)\//

test('a daemon with only env and file providers starts without loading any cloud SDK, nor prom-client before the first scrape', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'latchkey-startup-'))
  try {
    await writeFile(path.join(dir, 'token'), 'file-secret-value-1234')
    const config = {
      listen: '127.0.0.1:0',
      admin: { listen: '127.0.0.1:0' },
      providers: { dev: { type: 'env' }, files: { type: 'file', dir } },
      credentials: {
        a: { provider: 'dev', ref: 'A_TOKEN', hosts: ['a.example.com'], inject: { type: 'bearer' } },
        b: { provider: 'files', ref: 'token', hosts: ['b.example.com'], inject: { type: 'bearer' } },
      },
    }
    const { stdout } = await promisify(execFile)(process.execPath, [path.join(ROOT, 'test/fixtures/startup-modules.ts'), JSON.stringify(config), JSON.stringify({ A_TOKEN: 'env-secret-value-1234' })], { timeout: 30_000 })
    const r = JSON.parse(stdout) as { modules: string[]; readyMs: number; rssMb: number; notReady: string[]; scraped: number; afterScrape: string[] }
    assert.deepEqual(r.notReady, [], 'both credentials were fetched')
    assert.ok(r.modules.some((m) => m.includes('/node_modules/undici/')), 'the module hook saw the proxy dependencies load')
    const cloud = r.modules.filter((m) => CLOUD.test(m))
    assert.deepEqual(cloud, [], 'no cloud SDK module was loaded')
    // prom-client (40–60 ms to load) waits for the first /metrics scrape.
    const prom = (mods: string[]) => mods.filter((m) => m.includes('/node_modules/prom-client/'))
    assert.deepEqual(prom(r.modules), [], 'prom-client is not loaded at ready')
    assert.equal(r.scraped, 200)
    assert.ok(prom(r.afterScrape).length > 0, 'the first scrape loads prom-client (so the check above can fail)')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('`latchkey run` without interception loads no X.509 or interception code; with interception it does', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'latchkey-startup-cli-'))
  try {
    const base = ['listen: 127.0.0.1:0', 'admin: { listen: 127.0.0.1:0 }', 'providers:', '  dev: { type: env }', 'credentials:', '  a: { provider: dev, ref: A_TOKEN, hosts: [a.example.com], inject: { type: bearer } }']
    const run = async (lines: string[]) => {
      const file = path.join(dir, `latchkey-${lines.length}.yaml`)
      await writeFile(file, lines.join('\n') + '\n')
      const { stdout } = await promisify(execFile)(process.execPath, [path.join(ROOT, 'test/fixtures/startup-modules.ts'), '--cli', file, JSON.stringify({ A_TOKEN: 'env-secret-value-1234' })], { timeout: 30_000 })
      const r = JSON.parse(stdout) as { modules: string[]; notReady: string[] }
      assert.deepEqual(r.notReady, [], 'the daemon became ready')
      assert.ok(r.modules.some((m) => m.includes('/src/cli/main.ts')), 'the run went through the CLI')
      return r.modules.filter((m) => X509.test(m))
    }
    assert.deepEqual(await run(base), [], 'a plain run loads no X.509 code')
    // The same check sees the interception chunk when it is needed, so the assertion above can fail.
    const withCa = await run([...base, 'intercept:', '  enabled: true', `  caDir: ${path.join(dir, 'ca')}`])
    assert.ok(withCa.some((m) => m.includes('/node_modules/@peculiar/x509/')), withCa.join('\n'))
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
