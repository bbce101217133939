/**
 * Structural lint of deploy/docker/Dockerfile (no Docker engine here): a small parser for the
 * instructions the file uses, then the rules the image promises.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const DOCKERFILE = path.join(ROOT, 'deploy', 'docker', 'Dockerfile')

interface Instruction {
  keyword: string
  args: string
  line: number
}

interface Stage {
  image: string
  name: string | undefined
  body: Instruction[]
}

/** Instructions with continuation lines joined and comments dropped. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = []
  let pending = ''
  let start = 0
  text.split('\n').forEach((raw, i) => {
    const line = raw.trimEnd()
    if (pending === '' && (line.trim() === '' || line.trimStart().startsWith('#'))) return
    if (pending === '') start = i + 1
    if (line.endsWith('\\')) {
      pending += line.slice(0, -1) + ' '
      return
    }
    const full = (pending + line).trim()
    pending = ''
    const m = /^(\w+)\s+([\s\S]*)$/.exec(full)
    if (!m) throw new Error(`line ${start}: cannot parse ${full}`)
    out.push({ keyword: (m[1] as string).toUpperCase(), args: (m[2] as string).trim(), line: start })
  })
  return out
}

function stages(instructions: Instruction[]): { args: Map<string, string>; stages: Stage[] } {
  const args = new Map<string, string>()
  const result: Stage[] = []
  for (const ins of instructions) {
    if (ins.keyword === 'ARG' && result.length === 0) {
      const [k, v] = ins.args.split('=', 2)
      args.set(k as string, v ?? '')
    } else if (ins.keyword === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args)
      if (!m) throw new Error(`line ${ins.line}: bad FROM`)
      const image = (m[1] as string).replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => args.get((a ?? b) as string) ?? '')
      result.push({ image, name: m[2], body: [] })
    } else {
      const current = result.at(-1)
      if (!current) throw new Error(`line ${ins.line}: ${ins.keyword} before FROM`)
      current.body.push(ins)
    }
  }
  return { args, stages: result }
}

const parsed = stages(parseDockerfile(readFileSync(DOCKERFILE, 'utf8')))
const build = parsed.stages[0] as Stage
const runtime = parsed.stages.at(-1) as Stage
const exec = (s: Stage, keyword: string) => s.body.filter((i) => i.keyword === keyword)

describe('deploy/docker/Dockerfile', () => {
  it('is multi-stage: a build stage and a separate runtime stage', () => {
    assert.ok(parsed.stages.length >= 2)
    assert.equal(build.name, 'build')
    assert.notEqual(runtime, build)
  })

  it('pins every base image to a tag that is not latest', () => {
    for (const s of parsed.stages) {
      assert.match(s.image, /^[\w./-]+(:\d+)?[\w./-]*:[\w.-]+(@sha256:[0-9a-f]{64})?$/, `tagged: ${s.image}`)
      assert.doesNotMatch(s.image, /:latest(@|$)/, s.image)
    }
  })

  it('runs Node 24: the build image and the runtime image', () => {
    assert.match(build.image, /^node:24[-.]/)
    assert.match(runtime.image, /nodejs24/)
  })

  it('builds with npm ci, npm run build, then production dependencies only, and runs the bundle on that pruned tree', () => {
    const runs = exec(build, 'RUN').map((i) => i.args)
    const ci = runs.indexOf('npm ci')
    const buildIdx = runs.findIndex((r) => r.startsWith('npm run build'))
    const prod = runs.indexOf('npm ci --omit=dev')
    assert.ok(ci >= 0 && buildIdx > ci && prod > buildIdx, runs.join(' | '))
    // The last step of the build stage: nothing may change node_modules after the check.
    assert.equal(runs.at(-1), 'node dist/cli/latchkey.js version', 'the bundle runs on production dependencies alone')
    assert.equal(runs.lastIndexOf('node dist/cli/latchkey.js version'), runs.length - 1)
    assert.ok(runs.length - 1 > prod)
  })

  it('the runtime stage uses no shell and no package manager: no RUN, exec-form ENTRYPOINT and CMD', () => {
    assert.deepEqual(exec(runtime, 'RUN'), [])
    for (const i of runtime.body.filter((x) => x.keyword === 'ENTRYPOINT' || x.keyword === 'CMD')) {
      assert.doesNotMatch(i.args, /\b(npm|npx|apt-get|apk|sh|bash)\b/, `line ${i.line}: no shell or package manager`)
    }
    const [entry] = exec(runtime, 'ENTRYPOINT')
    const argv = JSON.parse(entry?.args ?? 'null') as string[]
    assert.ok(Array.isArray(argv), 'ENTRYPOINT in exec form')
    assert.equal(argv[0], '/nodejs/bin/node')
    assert.equal(argv.at(-1), '/app/dist/cli/latchkey.js', 'the file npm run build writes')
    assert.ok(Array.isArray(JSON.parse(exec(runtime, 'CMD')[0]?.args ?? 'null')), 'CMD in exec form')
  })

  it('runs as a numeric non-root user', () => {
    const users = exec(runtime, 'USER')
    assert.equal(users.length, 1)
    const [uid] = (users[0]?.args ?? '').split(':')
    assert.match(uid ?? '', /^\d+$/, 'numeric, so runAsNonRoot can be verified by the kubelet')
    assert.notEqual(Number(uid), 0)
  })

  it('copies exactly the build output, production node_modules and package.json from the build stage', () => {
    const copies = exec(runtime, 'COPY').map((i) => i.args)
    assert.deepEqual(copies.sort(), ['--from=build /src/dist ./dist', '--from=build /src/node_modules ./node_modules', '--from=build /src/package.json ./package.json'])
    assert.ok(exec(runtime, 'WORKDIR').some((i) => i.args === '/app'))
  })

  it('sends the build only the files it needs (Dockerfile-specific .dockerignore)', () => {
    const ignore = readFileSync(`${DOCKERFILE}.dockerignore`, 'utf8')
    assert.match(ignore, /^\*\*$/m)
    const copied = exec(build, 'COPY').flatMap((i) => i.args.split(/\s+/).slice(0, -1))
    for (const src of copied) assert.match(ignore, new RegExp(`^!${src.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/?$`, 'm'), `${src} is sent to the build`)
  })
})
