/**
 * The pieces the injector adds to a pod: the latchkey native sidecar, its volumes, and the
 * variables and mounts for the app containers. The same shape as the sidecar in
 * `deploy/kubernetes/base` (a test keeps the two in step).
 */
import type { InjectionPlan } from './annotations.ts'
import { parseQuantity } from './quantity.ts'

/** Paths inside the pod. The config in the ConfigMap must use these (see docs/kubernetes.md). */
export const POD_PATHS = {
  /** The ConfigMap, read-only, sidecar only. */
  configDir: '/etc/latchkey',
  /** emptyDir, sidecar only: `intercept.caDir` (the CA private key never leaves this volume). */
  stateDir: '/var/lib/latchkey',
  /** emptyDir shared with the app (read-only there): `intercept.publicCaFile` = `<sharedDir>/ca.pem`. */
  sharedDir: '/var/run/latchkey',
  /** The `latchkey.dev/secret` Secret, read-only, sidecar only: `providers.<name>: { type: file, dir: /var/run/secrets/latchkey }`. */
  secretDir: '/var/run/secrets/latchkey',
} as const

export const SIDECAR_NAME = 'latchkey'
export const VOLUMES = { config: 'latchkey-config', state: 'latchkey-state', shared: 'latchkey-shared', secret: 'latchkey-secret' } as const

/** Container and volume objects as plain JSON (the Kubernetes API shapes, loosely typed). */
export type Json = Record<string, unknown>

/** Operator settings for the injected sidecar (flags of `latchkey injector`). */
export interface SidecarOptions {
  /** The latchkey image, e.g. `ghcr.io/example/latchkey:0.1.0`. */
  image: string
  imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never'
  /** `listen` port of the config (loopback). */
  proxyPort: number
  /** `admin.listen` port of the config (must bind the pod IP for kubelet probes). */
  adminPort: number
  /** `NO_PROXY` for app containers. */
  noProxy: string
  resources: { requests: { cpu: string; memory: string }; limits: { memory: string; cpu?: string } }
}

export const DEFAULT_SIDECAR_OPTIONS: Omit<SidecarOptions, 'image'> = {
  imagePullPolicy: 'IfNotPresent',
  proxyPort: 8181,
  adminPort: 8182,
  // Cluster-internal names go direct: with `egress: deny` latchkey would refuse them.
  noProxy: 'localhost,127.0.0.1,::1,.svc,.cluster.local',
  // Measured on the image layout (Node 24): about 100 MiB RSS at ready, 112 MiB with interception
  // on; under sustained load 150-180 MiB with the heap capped by `sidecarNodeOptions` (docs/kubernetes.md).
  resources: { requests: { cpu: '20m', memory: '128Mi' }, limits: { memory: '256Mi' } },
}

type Plan = Extract<InjectionPlan, { inject: true }>

/**
 * The operator's sidecar settings with the pod's `latchkey.dev/image` and resource annotations
 * applied, or why they cannot be (a request above its limit, which the API server would refuse
 * later with a message that does not name the annotation).
 */
export function sidecarOptionsFor(plan: Plan, o: SidecarOptions): { ok: true; options: SidecarOptions } | { ok: false; message: string } {
  const r = plan.resources ?? {}
  const limitsCpu = r.limitsCpu ?? o.resources.limits.cpu
  const resources = {
    requests: { cpu: r.requestsCpu ?? o.resources.requests.cpu, memory: r.requestsMem ?? o.resources.requests.memory },
    limits: { memory: r.limitsMem ?? o.resources.limits.memory, ...(limitsCpu !== undefined ? { cpu: limitsCpu } : {}) },
  }
  for (const [kind, request, limit] of [
    ['memory', resources.requests.memory, resources.limits.memory],
    ['cpu', resources.requests.cpu, resources.limits.cpu],
  ] as const) {
    if (limit !== undefined && parseQuantity(request, kind) > parseQuantity(limit, kind)) {
      return { ok: false, message: `the sidecar's ${kind} request (${request}) is above its limit (${limit}); set latchkey.dev/requests-${kind === 'cpu' ? 'cpu' : 'mem'} and latchkey.dev/limits-${kind === 'cpu' ? 'cpu' : 'mem'} together` }
    }
  }
  return { ok: true, options: { ...o, image: plan.image ?? o.image, resources } }
}

const PROBE_TIMING = {
  // The app containers start only after this succeeds: readiness means every prefetched
  // credential holds a value that may be served, so the pipeline's first request can be.
  // A failed prefetch retries by itself, so this waits up to 10 minutes: a restart would
  // only start latchkey's backoff over.
  startup: { periodSeconds: 1, failureThreshold: 600, timeoutSeconds: 2 },
  liveness: { periodSeconds: 10, failureThreshold: 3, timeoutSeconds: 2 },
  readiness: { periodSeconds: 5, failureThreshold: 2, timeoutSeconds: 2 },
}

/** The native sidecar: an init container with `restartPolicy: Always`, so Jobs still complete. */
export function sidecarContainer(plan: Plan, o: SidecarOptions): Json {
  const probe = (path: string, timing: Record<string, number>) => ({ httpGet: { path, port: 'latchkey-admin' }, ...timing })
  return {
    name: SIDECAR_NAME,
    image: o.image,
    imagePullPolicy: o.imagePullPolicy,
    restartPolicy: 'Always',
    // The admin listener must bind the pod IP for kubelet httpGet probes, whatever the config says.
    args: ['run', '-c', `${POD_PATHS.configDir}/${plan.configKey}`, '--admin-listen', `0.0.0.0:${o.adminPort}`],
    ports: [{ name: 'latchkey-admin', containerPort: o.adminPort, protocol: 'TCP' }],
    startupProbe: probe('/readyz', PROBE_TIMING.startup),
    livenessProbe: probe('/healthz', PROBE_TIMING.liveness),
    readinessProbe: probe('/readyz', PROBE_TIMING.readiness),
    resources: { requests: { ...o.resources.requests }, limits: { ...o.resources.limits } },
    env: [{ name: 'NODE_OPTIONS', value: sidecarNodeOptions(o.resources.limits.memory) }],
    securityContext: restrictedSecurityContext(),
    volumeMounts: [
      { name: VOLUMES.config, mountPath: POD_PATHS.configDir, readOnly: true },
      { name: VOLUMES.state, mountPath: POD_PATHS.stateDir },
      { name: VOLUMES.shared, mountPath: POD_PATHS.sharedDir },
      ...(plan.secret ? [{ name: VOLUMES.secret, mountPath: POD_PATHS.secretDir, readOnly: true }] : []),
    ],
  }
}

/**
 * `NODE_OPTIONS` for the sidecar: an old-space cap of 3/8 of the memory limit (96 MiB for
 * 256Mi) and a young-generation cap of {@link SEMI_SPACE_MIB} MiB per semi-space. V8 does not
 * size its heap from the container's limit reliably (nodejs/node#64646: in a 256 MiB cgroup it
 * reports a 262 MiB heap limit), and it sizes the young generation from the host's memory (two
 * 64 MiB semi-spaces on a 16 GiB node), which it keeps once grown: under sustained load an
 * uncapped sidecar grew to about 250 MiB RSS, at the edge of a 256Mi limit, where the kernel
 * kills it. The rest of the limit is for code, buffers and TLS state outside the heap. This
 * replaces the image's own `NODE_OPTIONS` (deploy/docker/Dockerfile), so it carries the same
 * young-generation cap. The injector command checks `--memory-limit` with the same parser at
 * start, so a limit it accepted never throws here.
 */
export function sidecarNodeOptions(memoryLimit: string): string {
  const bytes = parseQuantity(memoryLimit, 'memory', 'the sidecar memory limit')
  const mib = Math.max(32, Math.floor((bytes * 3) / 8 / 1024 ** 2))
  return `--max-old-space-size=${mib} --max-semi-space-size=${SEMI_SPACE_MIB}`
}

/**
 * MiB per young-generation semi-space in every shipped launch path (bin/latchkey.js, the
 * image, the injected sidecar): measured in docs/benchmarks.md, it keeps RSS under load near
 * 100 MiB at the same throughput as V8's host-sized default.
 */
export const SEMI_SPACE_MIB = 2

/** The restricted Pod Security profile, container level. */
export function restrictedSecurityContext(): Json {
  return {
    runAsNonRoot: true,
    runAsUser: 65532,
    runAsGroup: 65532,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  }
}

/**
 * The sidecar's volumes. The Secret's files belong to root; the latchkey uid reads them through
 * the pod's fsGroup when there is one (mode 0440), else they must be world-readable (0444, and
 * the file provider warns) — acceptable because only the latchkey container mounts them.
 */
export function sidecarVolumes(plan: Plan, podHasFsGroup = false): Json[] {
  return [
    { name: VOLUMES.config, configMap: { name: plan.configMap, items: [{ key: plan.configKey, path: plan.configKey }] } },
    { name: VOLUMES.state, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
    { name: VOLUMES.shared, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
    ...(plan.secret ? [{ name: VOLUMES.secret, secret: { secretName: plan.secret, defaultMode: podHasFsGroup ? 0o440 : 0o444 } }] : []),
  ]
}

/**
 * Variables for app containers, the same set as the app containers in `deploy/kubernetes/base`
 * (a test compares them). Both spellings of the proxy variables: curl and wget read only the
 * lowercase `http_proxy`, Go and Java tooling mostly the uppercase ones.
 *
 * `HTTPS_PROXY` only with interception: without it latchkey refuses CONNECT to credentialed
 * hosts (it cannot inject into a tunnel) and, with `egress: deny`, to every other host, so
 * setting it would turn each of the app's https:// calls (pip, S3, ...) into a 403.
 */
export function appEnv(plan: Plan, o: SidecarOptions): { name: string; value: string }[] {
  const url = `http://127.0.0.1:${o.proxyPort}`
  const env = [
    { name: 'LATCHKEY_URL', value: url },
    { name: 'HTTP_PROXY', value: url },
    { name: 'http_proxy', value: url },
    { name: 'NO_PROXY', value: o.noProxy },
    { name: 'no_proxy', value: o.noProxy },
  ]
  if (plan.intercept) {
    env.push({ name: 'HTTPS_PROXY', value: url }, { name: 'https_proxy', value: url })
    // These replace a client's whole trust store, so they point at the bundle (system roots + CA).
    const bundle = `${POD_PATHS.sharedDir}/ca-bundle.pem`
    env.push(
      { name: 'SSL_CERT_FILE', value: bundle },
      { name: 'REQUESTS_CA_BUNDLE', value: bundle },
      { name: 'CURL_CA_BUNDLE', value: bundle },
      // git (libcurl) reads only this one.
      { name: 'GIT_SSL_CAINFO', value: bundle },
      // Node adds this one to its roots, so the CA alone is enough.
      { name: 'NODE_EXTRA_CA_CERTS', value: `${POD_PATHS.sharedDir}/ca.pem` },
    )
  }
  return env
}

/** The read-only mount of the public CA for app containers (interception only). */
export function appVolumeMount(): Json {
  return { name: VOLUMES.shared, mountPath: POD_PATHS.sharedDir, readOnly: true }
}
