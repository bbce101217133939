/**
 * Validation of Kubernetes objects against the Kubernetes OpenAPI schemas, through the
 * `kubernetes-models` package (its classes carry validators generated from the upstream
 * OpenAPI document), and of cert-manager objects through `@kubernetes-models/cert-manager`.
 * The model class is found from apiVersion and kind.
 */

export type SchemaResult = { ok: true } | { ok: false; message: string } | { ok: 'no-schema'; message: string }

interface ModelClass {
  new (data: unknown): { validate(): void }
}

/**
 * Where a group's models live: the core API groups in `kubernetes-models`, cert-manager's custom
 * resources in `@kubernetes-models/cert-manager` (generated from cert-manager's CRD schemas).
 */
export function modelModule(apiVersion: string, kind: string): string {
  const [group, version] = apiVersion.includes('/') ? (apiVersion.split('/') as [string, string]) : ['', apiVersion]
  if (group === 'cert-manager.io') return `@kubernetes-models/cert-manager/${group}/${version}/${kind}`
  return group === '' ? `kubernetes-models/${version}/${kind}` : `kubernetes-models/${group}/${version}/${kind}`
}

/** The model class for apiVersion and kind, or undefined when no package has it. */
export async function modelFor(apiVersion: string, kind: string): Promise<ModelClass | undefined> {
  const spec = modelModule(apiVersion, kind)
  const mod = (await import(spec).catch((err: unknown) => {
    if ((err as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' || (err as { code?: string }).code === 'ERR_PACKAGE_PATH_NOT_EXPORTED') return undefined
    throw err
  })) as Record<string, ModelClass> | undefined
  if (!mod) return undefined
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
