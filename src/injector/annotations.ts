/**
 * The pod annotations the injector reads, and their validation. A pod whose annotations are
 * wrong is refused at admission with a message that names the annotation, instead of being
 * created as a pod that can never start (a sidecar pointed at a ConfigMap name that cannot exist).
 */

/** Annotation keys under the `latchkey.dev/` prefix. */
export const ANNOTATIONS = {
  /** `"true"` adds the sidecar; `"false"` (or no annotation) leaves the pod alone. */
  inject: 'latchkey.dev/inject',
  /** Name of the ConfigMap (same namespace) that holds the latchkey config. Required with inject. */
  config: 'latchkey.dev/config',
  /** Key of the config inside the ConfigMap. Default `latchkey.yaml`. */
  configKey: 'latchkey.dev/config-key',
  /** Optional: a Secret (same namespace) mounted read-only into the latchkey container only, at `/var/run/secrets/latchkey` (for `type: file` providers). */
  secret: 'latchkey.dev/secret',
  /** `"false"`: do not set the proxy / CA variables on the app containers. Default `"true"`. */
  env: 'latchkey.dev/env',
  /** `"true"`: mount the public CA into app containers and set the CA variables (needs `intercept.enabled` in the config). */
  intercept: 'latchkey.dev/intercept',
  /** Written by the injector; marks a pod as injected. */
  status: 'latchkey.dev/status',
} as const

export const ANNOTATION_PREFIX = 'latchkey.dev/'
export const DEFAULT_CONFIG_KEY = 'latchkey.yaml'

/** What the annotations ask for. */
export type InjectionPlan =
  | { readonly inject: false }
  | {
      readonly inject: true
      readonly configMap: string
      readonly configKey: string
      /** Secret mounted into the sidecar only, if any. */
      readonly secret: string | undefined
      readonly env: boolean
      readonly intercept: boolean
    }

export type AnnotationResult = { ok: true; plan: InjectionPlan } | { ok: false; problems: string[] }

const KNOWN = new Set<string>(Object.values(ANNOTATIONS))
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const CONFIGMAP_KEY = /^[-._a-zA-Z0-9]+$/

/**
 * Read and validate the `latchkey.dev/*` annotations. Every problem is reported, not only the
 * first. An unknown `latchkey.dev/` key is a problem too: `latchkey.dev/injct: "true"` would
 * otherwise leave a pipeline silently without its credentials.
 */
export function readAnnotations(annotations: Readonly<Record<string, unknown>> | undefined): AnnotationResult {
  const a = annotations ?? {}
  const problems: string[] = []
  for (const key of Object.keys(a)) {
    if (key.startsWith(ANNOTATION_PREFIX) && !KNOWN.has(key)) {
      problems.push(`unknown annotation ${key} (known: ${[...KNOWN].filter((k) => k !== ANNOTATIONS.status).join(', ')})`)
    }
  }
  const inject = flag(a, ANNOTATIONS.inject, false, problems)
  const env = flag(a, ANNOTATIONS.env, true, problems)
  const intercept = flag(a, ANNOTATIONS.intercept, false, problems)
  if (!inject) return problems.length > 0 ? { ok: false, problems } : { ok: true, plan: { inject: false } }

  const configMap = a[ANNOTATIONS.config]
  if (configMap === undefined || configMap === '') {
    problems.push(`${ANNOTATIONS.inject} is "true" but ${ANNOTATIONS.config} is missing: name the ConfigMap (in the pod's namespace) that holds the latchkey config`)
  } else if (!validName(configMap)) {
    problems.push(`${ANNOTATIONS.config}: ${JSON.stringify(configMap)} is not a valid ConfigMap name (a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)`)
  }
  const secret = a[ANNOTATIONS.secret]
  if (secret !== undefined && !validName(secret)) {
    problems.push(`${ANNOTATIONS.secret}: ${JSON.stringify(secret)} is not a valid Secret name (a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)`)
  }
  const configKey = a[ANNOTATIONS.configKey] ?? DEFAULT_CONFIG_KEY
  if (typeof configKey !== 'string' || configKey.length > 253 || !CONFIGMAP_KEY.test(configKey) || configKey === '.' || configKey === '..') {
    problems.push(`${ANNOTATIONS.configKey}: ${JSON.stringify(configKey)} is not a valid ConfigMap key (letters, digits, '-', '_' and '.', at most 253 characters)`)
  }
  if (problems.length > 0) return { ok: false, problems }
  return { ok: true, plan: { inject: true, configMap: configMap as string, configKey: configKey as string, secret: secret as string | undefined, env, intercept } }
}

function validName(v: unknown): boolean {
  return typeof v === 'string' && v.length <= 253 && DNS1123_SUBDOMAIN.test(v)
}

/** `"true"` / `"false"` exactly (Kubernetes annotation values are strings; `"yes"`, `"1"` or `"True"` are refused, not guessed). */
function flag(a: Readonly<Record<string, unknown>>, key: string, fallback: boolean, problems: string[]): boolean {
  const v = a[key]
  if (v === undefined) return fallback
  if (v === 'true') return true
  if (v === 'false') return false
  problems.push(`${key}: ${JSON.stringify(v)} is not "true" or "false"`)
  return fallback
}
