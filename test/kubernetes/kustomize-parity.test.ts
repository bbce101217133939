/**
 * The install overlay docs/kubernetes.md shows, and parity between render.ts (the kustomize subset the
 * other tests render with) and the real `kubectl kustomize`, where kubectl is on PATH.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments } from 'yaml'
import { renderKustomization, type K8sObject } from './render.ts'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const ROOT = path.join(REPO, 'deploy', 'kubernetes')
const LAYOUTS = ['base', 'overlays/vault', 'overlays/aws', 'overlays/gcp', 'overlays/azure', 'injector/base', 'injector/cert-manager', 'examples/injected-job', 'examples/intercepted-job']
const README_OVERLAY = 'deploy/kubernetes/injector/local/kustomization.yaml'

/** The YAML block that follows the docs/kubernetes.md line naming the overlay file. */
function readmeOverlay(): string {
  const readme = readFileSync(path.join(REPO, 'docs', 'kubernetes.md'), 'utf8')
  const at = readme.indexOf(`Create \`${README_OVERLAY}\`:`)
  assert.ok(at >= 0, `docs/kubernetes.md names ${README_OVERLAY}`)
  const m = /```yaml\n([\s\S]*?)```/.exec(readme.slice(at))
  return m?.[1] ?? assert.fail('no yaml block after it')
}

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8', timeout: 20_000 })
const noKubectl = kubectl.status === 0 ? false : `kubectl is not on PATH (${kubectl.error?.message ?? kubectl.stderr.trim()}): render.ts is not compared with kubectl kustomize`

function kustomize(dir: string): K8sObject[] {
  const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 60_000 })
  assert.equal(r.status, 0, `kubectl kustomize ${dir}: ${r.stderr}`)
  return parseAllDocuments(r.stdout).map((d) => d.toJS() as K8sObject)
}

/** Merge-keyed lists whose order Kubernetes does not depend on; containers keep their order (the sidecar is first). */
const UNORDERED: Record<string, string> = { volumes: 'name', volumeMounts: 'mountPath', env: 'name', ports: 'containerPort' }

function normalize(v: unknown, key = ''): unknown {
  if (Array.isArray(v)) {
    const items = v.map((x) => normalize(x))
    const by = UNORDERED[key]
    return by ? items.sort((a, b) => String((a as Record<string, unknown>)[by]).localeCompare(String((b as Record<string, unknown>)[by]))) : items
  }
  if (typeof v !== 'object' || v === null) return v
  return Object.fromEntries(Object.keys(v).sort().map((k) => [k, normalize((v as Record<string, unknown>)[k], k)]))
}

const byId = (objects: K8sObject[]) => new Map(objects.map((o) => [`${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`, normalize(o)]))

describe('kustomize: the README install overlay and render.ts parity', () => {
  let local: string
  before(() => {
    local = path.join(mkdtempSync(path.join(tmpdir(), 'latchkey-kustomize-')), 'local')
    mkdirSync(local)
    writeFileSync(path.join(local, 'kustomization.yaml'), readmeOverlay().replace('../cert-manager', path.relative(local, path.join(ROOT, 'injector', 'cert-manager'))))
  })
  after(() => rmSync(path.dirname(local), { recursive: true, force: true }))

  it('the README overlay points both the injector container and the injected sidecar at the pushed image', () => {
    const dep = renderKustomization(local).find((o) => o.kind === 'Deployment' && o.metadata.name === 'latchkey-injector') ?? assert.fail('no injector Deployment')
    const [c] = (dep.spec as { template: { spec: { containers: { image: string; env?: { name: string; value?: string }[] }[] } } }).template.spec.containers
    assert.equal(c?.image, 'registry.example.com/latchkey:0.1.0')
    assert.equal(c?.env?.find((e) => e.name === 'LATCHKEY_INJECTOR_SIDECAR_IMAGE')?.value, 'registry.example.com/latchkey:0.1.0')
  })

  it('render.ts and kubectl kustomize produce the same objects for every layout and the README overlay (order of keyed lists aside)', { skip: noKubectl }, () => {
    for (const dir of [...LAYOUTS.map((d) => path.join(ROOT, d)), local]) {
      const ours = byId(renderKustomization(dir))
      const real = byId(kustomize(dir))
      const at = path.relative(REPO, dir)
      assert.deepEqual([...ours.keys()].sort(), [...real.keys()].sort(), `${at}: the same objects`)
      for (const [id, o] of ours) assert.deepEqual(o, real.get(id), `${at}: ${id}`)
    }
  })
})
