/**
 * Pod mutation as an RFC 6902 JSON Patch: the form an AdmissionReview response carries.
 *
 * Operations are ordered so that every path refers to the document as it is at that step:
 * edits of existing init containers come before the sidecar is inserted at index 0 (which
 * shifts them by one).
 */
import { ANNOTATIONS, type InjectionPlan } from './annotations.ts'
import { appEnv, appVolumeMount, POD_PATHS, SIDECAR_NAME, sidecarContainer, sidecarOptionsFor, sidecarVolumes, VOLUMES, type Json, type SidecarOptions } from './sidecar.ts'

export type PatchOperation = { op: 'add' | 'replace'; path: string; value: unknown }

export type PodPatchResult =
  | { ok: true; patch: PatchOperation[]; injected: boolean; reinvocation: boolean }
  | { ok: false; message: string }

export const STATUS_INJECTED = 'injected'

/** `~` → `~0`, `/` → `~1` (RFC 6901), for keys such as `latchkey.dev/status`. */
export function escapePointer(key: string): string {
  return key.replaceAll('~', '~0').replaceAll('/', '~1')
}

/**
 * True when the pod already holds a container named `latchkey` (injected earlier, or written
 * into the manifest as in `deploy/kubernetes/base`). The status annotation alone is not
 * enough: it is copied along with the rest of the metadata (a manifest saved from a running
 * pod, a controller that copies annotations), and a pod that carries it without the
 * container would otherwise run with no broker at all. Such a pod is injected.
 */
export function alreadyInjected(pod: Json): boolean {
  const spec = asObject(pod.spec)
  return [...asArray(spec.initContainers), ...asArray(spec.containers)].some((c) => asObject(c).name === SIDECAR_NAME)
}

/**
 * The patch that adds latchkey to `pod`, or a reason to refuse the pod.
 *
 * A pod this injector has already injected (the sidecar and the status marker) is called again
 * when a later webhook changed it (`reinvocationPolicy: IfNeeded`): then only the containers
 * that lack the variables or the CA mount get them, so a container another webhook added is
 * wired too, and a pod that needs nothing gets an empty patch. A pod with a hand-written
 * latchkey container and no marker is left alone. A pod without the inject annotation gets an
 * empty patch.
 */
export function podPatch(pod: Json, plan: InjectionPlan, o: SidecarOptions): PodPatchResult {
  if (!plan.inject) return { ok: true, patch: [], injected: false, reinvocation: false }
  const spec = asObject(pod.spec)
  const reinvocation = alreadyInjected(pod)
  if (reinvocation && asObject(asObject(pod.metadata).annotations)[ANNOTATIONS.status] !== STATUS_INJECTED) {
    return { ok: true, patch: [], injected: false, reinvocation: false }
  }
  if (!reinvocation && spec.hostNetwork === true) {
    return { ok: false, message: 'latchkey cannot be injected into a hostNetwork pod: its loopback proxy and admin port would be bound on the node' }
  }
  const volumes = asArray(spec.volumes).map(asObject)
  if (!reinvocation) {
    for (const v of Object.values(VOLUMES)) {
      if (volumes.some((x) => x.name === v)) return { ok: false, message: `the pod already has a volume named ${v}; latchkey needs that name for its own volume` }
    }
  }
  const sidecarOptions = sidecarOptionsFor(plan, o)
  if (!sidecarOptions.ok) return sidecarOptions
  const wanted = appEnv(plan, sidecarOptions.options)

  const patch: PatchOperation[] = []
  const groups = [
    ['initContainers', asArray(spec.initContainers)],
    ['containers', asArray(spec.containers)],
  ] as const
  for (const [field, list] of groups) {
    for (const [i, raw] of list.entries()) {
      const c = asObject(raw)
      if (c.name === SIDECAR_NAME) continue
      if (plan.containers && !plan.containers.includes(String(c.name))) continue
      const at = `/spec/${field}/${i}`
      if (plan.env) {
        const ops = envPatch(`${at}/env`, String(c.name), asArray(c.env).map(asObject), wanted)
        if (typeof ops === 'string') return { ok: false, message: ops }
        patch.push(...ops)
      }
      if (plan.intercept) {
        const mounts = asArray(c.volumeMounts).map(asObject)
        const clash = mounts.find((m) => m.mountPath === POD_PATHS.sharedDir && m.name !== VOLUMES.shared)
        if (clash) return { ok: false, message: `container ${String(c.name)} already mounts a volume at ${POD_PATHS.sharedDir}, where latchkey puts its public CA` }
        addMissing(patch, `${at}/volumeMounts`, mounts, [appVolumeMount()])
      }
    }
  }
  if (reinvocation) return { ok: true, patch, injected: patch.length > 0, reinvocation: true }

  // First among the init containers, so init containers after it can already use the proxy.
  const sidecar = sidecarContainer(plan, sidecarOptions.options)
  if (spec.initContainers === undefined) patch.push({ op: 'add', path: '/spec/initContainers', value: [sidecar] })
  else patch.push({ op: 'add', path: '/spec/initContainers/0', value: sidecar })

  const added = sidecarVolumes(plan, typeof asObject(spec.securityContext).fsGroup === 'number')
  if (spec.volumes === undefined) patch.push({ op: 'add', path: '/spec/volumes', value: added })
  else for (const v of added) patch.push({ op: 'add', path: '/spec/volumes/-', value: v })

  // The pod has annotations (that is how it asked for injection), so the map exists.
  patch.push({ op: 'add', path: `/metadata/annotations/${escapePointer(ANNOTATIONS.status)}`, value: STATUS_INJECTED })
  return { ok: true, patch, injected: true, reinvocation: false }
}

/**
 * The proxy variables in their two spellings. Each pair is one setting: curl and wget read only
 * the lowercase `http_proxy`, Go and Java tooling mostly the uppercase one, so a container with
 * one spelling set by its author and the other by latchkey would send half its clients each way.
 */
const PAIRS = [
  ['HTTP_PROXY', 'http_proxy'],
  ['HTTPS_PROXY', 'https_proxy'],
  ['NO_PROXY', 'no_proxy'],
] as const

/**
 * The env operations for one container, or why it is refused.
 *
 * - A proxy pair latchkey sets (`HTTP_PROXY`, and `HTTPS_PROXY` with interception) that the
 *   container already sets to something else, in either spelling or from a `valueFrom`, refuses
 *   the pod: latchkey must be that container's proxy and does not chain to another one, and
 *   silently overriding the author's proxy would be as wrong as leaving half of it in place.
 *   An empty value counts as unset. The value is never quoted (a proxy URL can hold a password).
 * - `NO_PROXY` / `no_proxy`: the container's entries are kept, latchkey's are added, and both
 *   spellings get the merged list; a `valueFrom` there is refused (the list cannot be merged).
 * - Other variables (`LATCHKEY_URL`, the CA variables) are added when the container lacks them;
 *   a container's own value is kept.
 *
 * Idempotent: a container that already holds latchkey's values gets no operation.
 */
function envPatch(path: string, container: string, existing: Json[], wanted: readonly { name: string; value: string }[]): PatchOperation[] | string {
  const want = new Map(wanted.map((w) => [w.name, w.value]))
  const at = (name: string) => existing.flatMap((e, i) => (e.name === name ? [i] : []))
  const replace: PatchOperation[] = []
  /** The value each paired name ends up with. */
  const final = new Map<string, string>()
  const setPair = (names: readonly string[], value: string) => {
    for (const n of names) {
      final.set(n, value)
      for (const i of at(n)) if (existing[i]?.value !== value || existing[i]?.valueFrom !== undefined) replace.push({ op: 'replace', path: `${path}/${i}`, value: { name: n, value } })
    }
  }
  for (const pair of PAIRS) {
    const ours = want.get(pair[0])
    if (ours === undefined) continue
    const set = pair.flatMap((n) => at(n).map((i) => existing[i] as Json))
    if (pair[0] === 'NO_PROXY') {
      if (set.some((e) => e.valueFrom !== undefined)) {
        return `container ${container} sets ${pair.join('/')} from a valueFrom reference; latchkey must add its loopback and cluster entries to that list, so set it as a plain value`
      }
      const entries = [...ours.split(','), ...set.flatMap((e) => String(e.value ?? '').split(','))].map((x) => x.trim()).filter(Boolean)
      setPair(pair, [...new Set(entries)].join(','))
      continue
    }
    const foreign = pair.filter((n) => at(n).some((i) => existing[i]?.valueFrom !== undefined || (existing[i]?.value !== undefined && existing[i]?.value !== '' && existing[i]?.value !== ours)))
    if (foreign.length > 0) {
      return (
        `container ${container} sets its own ${foreign.join(' and ')}: latchkey must be the proxy of the containers it serves and does not chain to another proxy ` +
        `(${pair.join(' and ')} are one setting: clients read one or the other). Remove ${pair.join(' / ')} from that container, ` +
        `leave it out with latchkey.dev/inject-containers, or keep all variables off with latchkey.dev/env: "false"`
      )
    }
    setPair(pair, ours)
  }
  const names = new Set(existing.map((e) => e.name))
  const add = wanted.filter((w) => !names.has(w.name)).map((w) => ({ name: w.name, value: final.get(w.name) ?? w.value }))
  if (existing.length === 0) return add.length > 0 ? [{ op: 'add', path, value: add }] : []
  return [...replace, ...add.map((value) => ({ op: 'add' as const, path: `${path}/-`, value }))]
}

/** Append the entries whose `name` the container does not already use. */
function addMissing(patch: PatchOperation[], path: string, existing: readonly unknown[], wanted: readonly Json[]): void {
  const names = new Set(existing.map((e) => asObject(e).name))
  const missing = wanted.filter((w) => !names.has(w.name))
  if (missing.length === 0) return
  if (existing.length === 0) patch.push({ op: 'add', path, value: missing })
  else for (const m of missing) patch.push({ op: 'add', path: `${path}/-`, value: m })
}

function asObject(v: unknown): Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : {}
}

function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : []
}
