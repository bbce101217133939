/**
 * Validation of Kubernetes objects against the Kubernetes OpenAPI schemas, through the
 * `kubernetes-models` package (its classes carry validators generated from the upstream
 * OpenAPI document). The model class is found from apiVersion and kind.
 */

export type SchemaResult = { ok: true } | { ok: false; message: string } | { ok: 'no-schema'; message: string }

interface ModelClass {
  new (data: unknown): { validate(): void }
}

/** Groups whose schemas kubernetes-models does not ship (custom resources). */
const NO_SCHEMA_GROUPS = new Set(['cert-manager.io'])

/** `kubernetes-models/<group>/<version>/<Kind>`; the core group is `v1`. */
export async function modelFor(apiVersion: string, kind: string): Promise<ModelClass | undefined> {
  const [group, version] = apiVersion.includes('/') ? (apiVersion.split('/') as [string, string]) : ['', apiVersion]
  if (NO_SCHEMA_GROUPS.has(group)) return undefined
  const spec = group === '' ? `kubernetes-models/${version}/${kind}` : `kubernetes-models/${group}/${version}/${kind}`
  const mod = (await import(spec)) as Record<string, ModelClass>
  const cls = mod[kind]
  if (!cls) throw new Error(`${spec} has no export ${kind}`)
  return cls
}

export async function validateObject(obj: { apiVersion: string; kind: string }): Promise<SchemaResult> {
  const cls = await modelFor(obj.apiVersion, obj.kind)
  if (!cls) return { ok: 'no-schema', message: `kubernetes-models has no schema for ${obj.apiVersion} ${obj.kind}` }
  try {
    new cls(obj).validate()
    return { ok: true }
  } catch (err) {
    return { ok: false, message: (err as Error).message }
  }
}
