import assert from 'node:assert/strict'
import { PassThrough } from 'node:stream'
import { describe, it } from 'node:test'
import { injectorCommand } from '../../src/cli/injector-command.ts'
import { LatchkeyError } from '../../src/errors.ts'
import { parseQuantity } from '../../src/injector/quantity.ts'
import { sidecarNodeOptions } from '../../src/injector/sidecar.ts'

describe('Kubernetes quantities', () => {
  it('reads plain bytes, decimal and binary suffixes and decimal exponents as Kubernetes does', () => {
    const cases: Array<[string, number]> = [
      ['0', 0],
      ['134217728', 134_217_728],
      ['1.5', 1.5],
      ['.5k', 500],
      ['2.', 2],
      ['128k', 128_000],
      ['512M', 512e6],
      ['1G', 1e9],
      ['2T', 2e12],
      ['1P', 1e15],
      ['1E', 1e18],
      ['64Ki', 65_536],
      ['256Mi', 268_435_456],
      ['1.5Gi', 1.5 * 1024 ** 3],
      ['1Ti', 1024 ** 4],
      ['1Pi', 1024 ** 5],
      ['1Ei', 1024 ** 6],
      ['129e6', 129e6],
      ['1E3', 1000],
      ['5e+2', 500],
      ['25e-1', 2.5],
    ]
    for (const [text, bytes] of cases) assert.equal(parseQuantity(text, 'memory'), bytes, text)
  })

  it('reads millicores for CPU', () => {
    assert.equal(parseQuantity('20m', 'cpu'), 0.02)
    assert.equal(parseQuantity('1500m', 'cpu'), 1.5)
    assert.equal(parseQuantity('0.5', 'cpu'), 0.5)
  })

  it('refuses "m" for memory with a message that names the flag and suggests Mi and M', () => {
    assert.throws(
      () => parseQuantity('512m', 'memory', '--memory-limit'),
      (e: unknown) => e instanceof LatchkeyError && e.code === 'config_invalid' && /^--memory-limit 512m: "m" means thousandths of a byte .*write 512Mi \(mebibytes\) or 512M \(megabytes\)$/.test(e.message),
    )
  })

  it('refuses what is not a quantity: signs, unknown or lower-case suffixes, spaces, empty, overflow', () => {
    for (const text of ['', ' 1Gi', '1Gi ', '-1Gi', '+1Gi', '1gi', '1mi', '1K', '1KB', '1 Mi', 'Mi', '.', '1e', '1.2.3', '0x10', '1e400']) {
      assert.throws(() => parseQuantity(text, 'memory', '--memory-request'), (e: unknown) => e instanceof LatchkeyError && e.code === 'config_invalid' && e.message.startsWith('--memory-request '), JSON.stringify(text))
    }
  })

  it('the sidecar heap cap follows every memory form the injector accepts, and a memory "m" is an error instead of the 32 MiB floor', () => {
    assert.equal(sidecarNodeOptions('512Mi'), '--max-old-space-size=192 --max-semi-space-size=2')
    assert.equal(sidecarNodeOptions('1Ti'), `--max-old-space-size=${(1024 ** 2 * 3) / 8} --max-semi-space-size=2`)
    assert.equal(sidecarNodeOptions('512e6'), sidecarNodeOptions('512M'))
    assert.throws(() => sidecarNodeOptions('512m'), /thousandths of a byte/)
  })
})

describe('latchkey injector resource flags', () => {
  /** Parse the injector's flags; resolves with the exit code and stderr of a refusal (the command never gets to listen). */
  async function refusal(args: string[]): Promise<{ exitCode: number | undefined; stderr: string }> {
    let stderr = ''
    const out = new PassThrough()
    out.resume()
    const cmd = injectorCommand({ env: {}, stdout: out, stderr: out, cwd: '/', signal: AbortSignal.abort() })
    cmd.exitOverride().configureOutput({ writeErr: (s) => (stderr += s) })
    const base = ['--listen', '127.0.0.1:0', '--sidecar-image', 'registry.example/latchkey:1.0.0', '--tls-cert', '/nonexistent/tls.crt', '--tls-key', '/nonexistent/tls.key']
    try {
      await cmd.parseAsync([...base, ...args], { from: 'user' })
    } catch (err) {
      return { exitCode: (err as { exitCode?: number }).exitCode, stderr }
    }
    assert.fail(`the injector accepted ${args.join(' ')}`)
  }

  it('refuses --memory-limit 512m with exit 2 and a message suggesting 512Mi', async () => {
    const r = await refusal(['--memory-limit', '512m'])
    assert.equal(r.exitCode, 2)
    assert.match(r.stderr, /latchkey injector: --memory-limit 512m: "m" means thousandths of a byte .*512Mi/)
  })

  it('refuses a memory request or CPU request that is not a quantity with exit 2, naming the flag', async () => {
    for (const [flag, value] of [
      ['--memory-request', '128MB'],
      ['--memory-request', '128m'],
      ['--cpu-request', '20 m'],
      ['--memory-limit', '-256Mi'],
    ] as const) {
      const r = await refusal([flag, value])
      assert.equal(r.exitCode, 2, `${flag} ${value}`)
      assert.match(r.stderr, new RegExp(`latchkey injector: ${flag} `), `${flag} ${value}`)
    }
  })
})
