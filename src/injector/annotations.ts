/**
 * The pod annotations the injector reads, and their validation. A pod whose annotations are
 * wrong is refused at admission with a message that names the annotation, instead of being
 * created as a pod that can never start (a sidecar pointed at a ConfigMap name that cannot exist).
 */

import { parseQuantity } from './quantity.ts'

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
  /** Sidecar image for this pod, instead of the injector's `--sidecar-image`. */
  image: 'latchkey.dev/image',
  /** Sidecar resources for this pod (Kubernetes quantities), instead of the injector's flags. */
  requestsCpu: 'latchkey.dev/requests-cpu',
  requestsMem: 'latchkey.dev/requests-mem',
  limitsCpu: 'latchkey.dev/limits-cpu',
  limitsMem: 'latchkey.dev/limits-mem',
  /** Comma-separated container names (init or regular) that get the variables and the CA mount. Default: all. */
  injectContainers: 'latchkey.dev/inject-containers',
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
      /** Per-pod sidecar image, if any. */
      readonly image?: string
      /** Per-pod sidecar resources; each one unset keeps the injector's default. */
      readonly resources?: SidecarResourceOverrides
      /** Containers that get the variables; undefined means all of them. */
      readonly containers?: readonly string[]
    }

export interface SidecarResourceOverrides {
  readonly requestsCpu?: string
  readonly requestsMem?: string
  readonly limitsCpu?: string
  readonly limitsMem?: string
}

export type AnnotationResult = { ok: true; plan: InjectionPlan } | { ok: false; problems: string[] }

const KNOWN = new Set<string>(Object.values(ANNOTATIONS))
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const CONFIGMAP_KEY = /^[-._a-zA-Z0-9]+$/
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
/** registry/path:tag or @digest, loosely: no spaces, no scheme, starts with a letter or digit. */
const IMAGE = /^[A-Za-z0-9][A-Za-z0-9._-]*(:[0-9]+)?(\/[A-Za-z0-9._-]+)*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@[a-z0-9]+:[a-f0-9]{32,})?$/

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
  const image = a[ANNOTATIONS.image]
  if (image !== undefined && (typeof image !== 'string' || image.length > 512 || !IMAGE.test(image))) {
    problems.push(`${ANNOTATIONS.image}: ${JSON.stringify(image)} is not an image reference (e.g. ghcr.io/example/latchkey:0.1.0 or ...@sha256:<digest>)`)
  }
  const resources: Record<string, string> = {}
  for (const [field, key, kind] of [
    ['requestsCpu', ANNOTATIONS.requestsCpu, 'cpu'],
    ['requestsMem', ANNOTATIONS.requestsMem, 'memory'],
    ['limitsCpu', ANNOTATIONS.limitsCpu, 'cpu'],
    ['limitsMem', ANNOTATIONS.limitsMem, 'memory'],
  ] as const) {
    const v = a[key]
    if (v === undefined) continue
    try {
      if (typeof v !== 'string') throw new Error(`${key}: expected a string`)
      if (parseQuantity(v, kind, key) <= 0) throw new Error(`${key}: ${JSON.stringify(v)} must be more than zero`)
      resources[field] = v
    } catch (err) {
      problems.push((err as Error).message)
    }
  }
  let containers: string[] | undefined
  const list = a[ANNOTATIONS.injectContainers]
  if (list !== undefined) {
    containers = typeof list === 'string' ? list.split(',').map((n) => n.trim()) : []
    const bad = containers.filter((n) => !DNS1123_LABEL.test(n) || n.length > 63)
    if (containers.length === 0 || bad.length > 0) {
      problems.push(`${ANNOTATIONS.injectContainers}: ${JSON.stringify(list)} is not a comma-separated list of container names (DNS-1123 labels)`)
    }
  }
  if (problems.length > 0) return { ok: false, problems }
  return {
    ok: true,
    plan: {
      inject: true,
      configMap: configMap as string,
      configKey: configKey as string,
      secret: secret as string | undefined,
      env,
      intercept,
      ...(image !== undefined ? { image: image as string } : {}),
      ...(Object.keys(resources).length > 0 ? { resources } : {}),
      ...(containers !== undefined ? { containers } : {}),
    },
  }
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
