/**
 * Renders the kustomize layout under deploy/kubernetes for the tests, without kubectl or a
 * kustomize binary (neither is an npm package, and a machine running the tests may have
 * neither). It applies the SUBSET of kustomize the layout uses, and refuses anything else (so
 * the layout cannot drift outside what is tested). Where kubectl is on PATH,
 * kustomize-parity.test.ts checks that `kubectl kustomize` renders the same objects.
 *
 * - `resources`: YAML files (multi-document) and directories holding a kustomization.yaml;
 * - `configMapGenerator`: `name`, `files` (`file` or `key=file`), `literals`, `behavior`
 *   (`create` | `replace` | `merge`), with `generatorOptions.disableNameSuffixHash: true` and
 *   `generatorOptions.labels`;
 * - `patches`: `path` to a strategic merge patch (maps merge; lists of containers,
 *   initContainers, volumes, env, volumeMounts, ports, webhooks merge by their Kubernetes merge
 *   key; `$patch: delete` items; `null` deletes a key) or to a JSON 6902 patch (a list of
 *   operations, `target` required); `target` selects by `kind`, `name`, `namespace` and an
 *   equality `labelSelector`, and a targeted strategic merge patch takes each target's kind
 *   and name, as kustomize does; `patch` holds the same inline instead of `path`;
 * - `images`: `name` with `newName`, `newTag` and/or `digest`, applied to the `image` of
 *   every container and init container.
 */
import { readFileSync, existsSync, statSync } from 'node:fs'
import path from 'node:path'
import { parseAllDocuments } from 'yaml'
import { applyPatch, type Operation } from './json-patch.ts'

export type K8sObject = Record<string, unknown> & { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> } }

const KUSTOMIZATION_KEYS = new Set(['apiVersion', 'kind', 'resources', 'configMapGenerator', 'generatorOptions', 'patches', 'images'])

/** Kubernetes strategic-merge keys for the lists the layout patches. */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  volumes: 'name',
  env: 'name',
  volumeMounts: 'mountPath',
  ports: 'containerPort',
  webhooks: 'name',
}

export function readYamlDocuments(file: string, text = readFileSync(file, 'utf8')): unknown[] {
  const docs = parseAllDocuments(text)
  const out: unknown[] = []
  for (const d of docs) {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]?.message}`)
    const v = d.toJS()
    if (v !== null && v !== undefined) out.push(v)
  }
  return out
}

/** Render the kustomization in `dir` into a list of objects. */
export function renderKustomization(dir: string): K8sObject[] {
  const kfile = path.join(dir, 'kustomization.yaml')
  const [k] = readYamlDocuments(kfile) as Record<string, unknown>[]
  if (!k) throw new Error(`${kfile} is empty`)
  for (const key of Object.keys(k)) if (!KUSTOMIZATION_KEYS.has(key)) throw new Error(`${kfile}: ${key} is outside the kustomize subset the tests render`)
  if (k.kind !== 'Kustomization') throw new Error(`${kfile}: kind must be Kustomization`)

  let objects: K8sObject[] = []
  for (const r of (k.resources as string[] | undefined) ?? []) {
    const p = path.resolve(dir, r)
    if (existsSync(p) && statSync(p).isDirectory()) objects.push(...renderKustomization(p))
    else for (const d of readYamlDocuments(p)) objects.push(asObject(d, p))
  }

  const gen = (k.generatorOptions ?? {}) as { disableNameSuffixHash?: boolean; labels?: Record<string, string> }
  for (const g of (k.configMapGenerator as Record<string, unknown>[] | undefined) ?? []) {
    if (gen.disableNameSuffixHash !== true) throw new Error(`${kfile}: the subset renders generators only with generatorOptions.disableNameSuffixHash: true`)
    const name = g.name as string
    const data: Record<string, string> = {}
    for (const f of (g.files as string[] | undefined) ?? []) {
      const [key, file] = f.includes('=') ? (f.split('=', 2) as [string, string]) : [path.basename(f), f]
      data[key] = readFileSync(path.resolve(dir, file), 'utf8')
    }
    for (const l of (g.literals as string[] | undefined) ?? []) {
      const i = l.indexOf('=')
      data[l.slice(0, i)] = l.slice(i + 1)
    }
    const behavior = (g.behavior as string | undefined) ?? 'create'
    const existing = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === name)
    if (behavior === 'create') {
      if (existing) throw new Error(`${kfile}: ConfigMap ${name} already exists (use behavior: replace or merge)`)
      objects.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, ...(gen.labels ? { labels: { ...gen.labels } } : {}) }, data })
    } else if (behavior === 'replace' || behavior === 'merge') {
      if (!existing) throw new Error(`${kfile}: no ConfigMap ${name} to ${behavior}`)
      existing.data = behavior === 'replace' ? data : { ...(existing.data as Record<string, string>), ...data }
    } else throw new Error(`${kfile}: unknown behavior ${behavior}`)
  }

  for (const p of (k.patches as Record<string, unknown>[] | undefined) ?? []) {
    if ((p.path === undefined) === (p.patch === undefined)) throw new Error(`${kfile}: a patch needs exactly one of path and patch`)
    const file = typeof p.path === 'string' ? path.resolve(dir, p.path) : `${kfile} (inline patch)`
    const [patch] = typeof p.path === 'string' ? readYamlDocuments(file) : readYamlDocuments(file, p.patch as string)
    const target = p.target as Target | undefined
    if (Array.isArray(patch)) {
      if (!target) throw new Error(`${file}: a JSON 6902 patch needs a target`)
      const hits = select(objects, target)
      if (hits.length === 0) throw new Error(`${file}: target matches nothing`)
      objects = objects.map((o) => (hits.includes(o) ? applyPatch(o, patch as Operation[]) : o))
    } else {
      const sp = asObject(patch, file)
      const hits = target ? select(objects, target) : objects.filter((o) => o.kind === sp.kind && o.metadata.name === sp.metadata.name && (sp.metadata.namespace === undefined || o.metadata.namespace === sp.metadata.namespace))
      if (hits.length === 0) throw new Error(`${file}: patch matches no object`)
      for (const o of hits) {
        const { apiVersion: _a, kind: _k, metadata, ...rest } = structuredClone(sp)
        const { name: _n, namespace: _ns, ...metaRest } = metadata
        strategicMerge(o as Record<string, unknown>, { ...rest, metadata: metaRest })
      }
    }
  }

  for (const img of (k.images as Record<string, unknown>[] | undefined) ?? []) {
    if (typeof img.name !== 'string' || Object.keys(img).some((key) => !['name', 'newName', 'newTag', 'digest'].includes(key))) throw new Error(`${kfile}: images entries take name, newName, newTag, digest`)
    for (const o of objects) setImages(o, img as unknown as ImageRule)
  }
  return objects
}

interface ImageRule {
  name: string
  newName?: string
  newTag?: string
  digest?: string
}

/** kustomize's image transformer: rewrites every container image whose name (without tag or digest) is rule.name. */
function setImages(node: unknown, rule: ImageRule): void {
  if (Array.isArray(node)) return node.forEach((n) => setImages(n, rule))
  if (!isObject(node)) return
  for (const [key, v] of Object.entries(node)) {
    if ((key !== 'containers' && key !== 'initContainers') || !Array.isArray(v)) {
      setImages(v, rule)
      continue
    }
    for (const c of v) {
      if (!isObject(c) || typeof c.image !== 'string') continue
      const ref = parseImage(c.image)
      if (ref.name !== rule.name) continue
      const name = rule.newName ?? ref.name
      if (rule.digest) c.image = `${name}@${rule.digest}`
      else if (rule.newTag) c.image = `${name}:${rule.newTag}`
      else c.image = `${name}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`
    }
  }
}

function parseImage(image: string): { name: string; tag?: string; digest?: string } {
  const [rest, digest] = image.split('@', 2) as [string, string | undefined]
  const colon = rest.lastIndexOf(':')
  // A ':' before the last '/' is a registry port (registry:5000/app), not a tag.
  const tag = colon > rest.lastIndexOf('/') ? rest.slice(colon + 1) : undefined
  return { name: tag === undefined ? rest : rest.slice(0, colon), ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) }
}

interface Target {
  kind?: string
  name?: string
  namespace?: string
  labelSelector?: string
}

function select(objects: K8sObject[], t: Target): K8sObject[] {
  const labels = (t.labelSelector ?? '')
    .split(',')
    .filter(Boolean)
    .map((s) => {
      if (!/^[^=!]+=[^=]*$/.test(s)) throw new Error(`labelSelector ${s}: only key=value is in the subset`)
      return s.split('=') as [string, string]
    })
  return objects.filter(
    (o) =>
      (t.kind === undefined || o.kind === t.kind) &&
      (t.name === undefined || o.metadata.name === t.name) &&
      (t.namespace === undefined || o.metadata.namespace === t.namespace) &&
      labels.every(([key, value]) => o.metadata.labels?.[key] === value),
  )
}

export function strategicMerge(target: Record<string, unknown>, patch: Record<string, unknown>): void {
  for (const [key, pv] of Object.entries(patch)) {
    if (key === '$patch') throw new Error('$patch is only in the subset on list items')
    const tv = target[key]
    if (pv === null) delete target[key]
    else if (isObject(pv) && isObject(tv)) strategicMerge(tv, pv)
    else if (Array.isArray(pv) && MERGE_KEYS[key] !== undefined) {
      const mergeKey = MERGE_KEYS[key]
      const list = Array.isArray(tv) ? tv : []
      for (const item of pv as Record<string, unknown>[]) {
        const i = list.findIndex((x) => isObject(x) && x[mergeKey] === item[mergeKey])
        if (item.$patch === 'delete') {
          if (i < 0) throw new Error(`$patch: delete of ${key} ${String(item[mergeKey])}: no such item`)
          list.splice(i, 1)
        } else if (i >= 0) strategicMerge(list[i] as Record<string, unknown>, item)
        else list.push(withoutDirectives(item))
      }
      target[key] = list
    } else target[key] = withoutDirectives(pv)
  }
}

function withoutDirectives(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutDirectives)
  if (!isObject(v)) return v
  if ('$patch' in v) throw new Error('$patch directive on an item that has nothing to patch')
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, withoutDirectives(x)]))
}

function asObject(v: unknown, where: string): K8sObject {
  if (!isObject(v) || typeof v.apiVersion !== 'string' || typeof v.kind !== 'string' || !isObject(v.metadata) || typeof v.metadata.name !== 'string') {
    throw new Error(`${where}: not a Kubernetes object (apiVersion, kind, metadata.name)`)
  }
  return v as K8sObject
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
