/**
 * Renders the kustomize layout under deploy/kubernetes for the tests. There is no kustomize
 * binary here and no npm package that renders kustomizations, so this applies the SUBSET of
 * kustomize the layout uses, and refuses anything else (so the layout cannot drift outside
 * what is tested):
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
 *   and name, as kustomize does.
 */
import { readFileSync, existsSync, statSync } from 'node:fs'
import path from 'node:path'
import { parseAllDocuments } from 'yaml'
import { applyPatch, type Operation } from './json-patch.ts'

export type K8sObject = Record<string, unknown> & { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> } }

const KUSTOMIZATION_KEYS = new Set(['apiVersion', 'kind', 'resources', 'configMapGenerator', 'generatorOptions', 'patches'])

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

export function readYamlDocuments(file: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'))
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
    const file = path.resolve(dir, p.path as string)
    const [patch] = readYamlDocuments(file)
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
  return objects
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
