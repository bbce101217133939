/**
 * Pod mutation as an RFC 6902 JSON Patch: the form an AdmissionReview response carries.
 *
 * Operations are ordered so that every path refers to the document as it is at that step:
 * edits of existing init containers come before the sidecar is inserted at index 0 (which
 * shifts them by one).
 */
import { ANNOTATIONS, type InjectionPlan } from './annotations.ts'
import { appEnv, appVolumeMount, POD_PATHS, SIDECAR_NAME, sidecarContainer, sidecarVolumes, VOLUMES, type Json, type SidecarOptions } from './sidecar.ts'

export type PatchOperation = { op: 'add'; path: string; value: unknown }

export type PodPatchResult =
  | { ok: true; patch: PatchOperation[]; injected: boolean }
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
 * A pod without the inject annotation, or already injected, gets an empty patch.
 */
export function podPatch(pod: Json, plan: InjectionPlan, o: SidecarOptions): PodPatchResult {
  if (!plan.inject || alreadyInjected(pod)) return { ok: true, patch: [], injected: false }
  const spec = asObject(pod.spec)
  if (spec.hostNetwork === true) {
    return { ok: false, message: 'latchkey cannot be injected into a hostNetwork pod: its loopback proxy and admin port would be bound on the node' }
  }
  const volumes = asArray(spec.volumes).map(asObject)
  for (const v of Object.values(VOLUMES)) {
    if (volumes.some((x) => x.name === v)) return { ok: false, message: `the pod already has a volume named ${v}; latchkey needs that name for its own volume` }
  }

  const patch: PatchOperation[] = []
  const groups = [
    ['initContainers', asArray(spec.initContainers)],
    ['containers', asArray(spec.containers)],
  ] as const
  for (const [field, list] of groups) {
    for (const [i, raw] of list.entries()) {
      const c = asObject(raw)
      const at = `/spec/${field}/${i}`
      if (plan.env) addMissing(patch, `${at}/env`, asArray(c.env), appEnv(plan, o))
      if (plan.intercept) {
        const mounts = asArray(c.volumeMounts).map(asObject)
        const clash = mounts.find((m) => m.mountPath === POD_PATHS.sharedDir)
        if (clash) return { ok: false, message: `container ${String(c.name)} already mounts a volume at ${POD_PATHS.sharedDir}, where latchkey puts its public CA` }
        addMissing(patch, `${at}/volumeMounts`, mounts, [appVolumeMount()])
      }
    }
  }

  // First among the init containers, so init containers after it can already use the proxy.
  const sidecar = sidecarContainer(plan, o)
  if (spec.initContainers === undefined) patch.push({ op: 'add', path: '/spec/initContainers', value: [sidecar] })
  else patch.push({ op: 'add', path: '/spec/initContainers/0', value: sidecar })

  const added = sidecarVolumes(plan, typeof asObject(spec.securityContext).fsGroup === 'number')
  if (spec.volumes === undefined) patch.push({ op: 'add', path: '/spec/volumes', value: added })
  else for (const v of added) patch.push({ op: 'add', path: '/spec/volumes/-', value: v })

  // The pod has annotations (that is how it asked for injection), so the map exists.
  patch.push({ op: 'add', path: `/metadata/annotations/${escapePointer(ANNOTATIONS.status)}`, value: STATUS_INJECTED })
  return { ok: true, patch, injected: true }
}

/**
 * Append the entries whose `name` the container does not already use. An app's own
 * `HTTP_PROXY` (or CA variable, or mount) is never replaced.
 */
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
