import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { test } from 'node:test'
import { ROOT } from '../helpers/child.ts'

const CLOUD = /node_modules\/(@aws-sdk|@smithy|@azure|@google-cloud|google-gax|google-auth-library|@grpc|node-vault|axios)\//

test('a daemon with only env and file providers starts without loading any cloud SDK', async () => {
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
    const r = JSON.parse(stdout) as { modules: string[]; readyMs: number; rssMb: number; notReady: string[] }
    assert.deepEqual(r.notReady, [], 'both credentials were fetched')
    assert.ok(r.modules.some((m) => m.includes('/node_modules/undici/')), 'the module hook saw the proxy dependencies load')
    const cloud = r.modules.filter((m) => CLOUD.test(m))
    assert.deepEqual(cloud, [], 'no cloud SDK module was loaded')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
