import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml } from 'yaml'
import { parseConfigText } from '../../src/config/load.ts'
import { reviewAdmission } from '../../src/injector/admission-review.ts'
import { readAnnotations } from '../../src/injector/annotations.ts'
import { POD_PATHS, sidecarContainer, sidecarVolumes } from '../../src/injector/sidecar.ts'
import { SIDECAR, admissionReview } from './fixtures.ts'
import { applyPatch, type Operation } from './json-patch.ts'
import { renderKustomization, type K8sObject } from './render.ts'
import { validateObject } from './schema.ts'
import { unknownFieldProblems } from './strict-fields.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'deploy', 'kubernetes')
const WORKLOADS = ['base', 'overlays/vault', 'overlays/aws', 'overlays/gcp', 'overlays/azure']
const EXAMPLES = ['examples/injected-job', 'examples/intercepted-job']
const LAYOUTS = [...WORKLOADS, 'injector/base', 'injector/cert-manager', ...EXAMPLES]
const IMAGE = 'ghcr.io/latchkey-dev/latchkey:0.1.0'

const rendered = new Map<string, K8sObject[]>(LAYOUTS.map((d) => [d, renderKustomization(path.join(ROOT, d))]))
const all = (d: string) => rendered.get(d) ?? assert.fail(`${d} not rendered`)
const find = (d: string, kind: string, name?: string) => all(d).find((o) => o.kind === kind && (name === undefined || o.metadata.name === name)) ?? assert.fail(`${d}: no ${kind} ${name ?? ''}`)

type Json = Record<string, unknown>
type Container = Json & { name: string; image: string; env?: { name: string; value?: string }[]; securityContext?: Json; resources?: { requests?: Json } }
type PodSpec = Json & { containers: Container[]; initContainers?: Container[]; volumes?: (Json & { name: string })[]; securityContext?: Json }
const podSpecOf = (o: K8sObject) => (o.spec as { template: { spec: PodSpec } }).template.spec
const podTemplates = (d: string) => all(d).filter((o) => o.kind === 'Job' || o.kind === 'Deployment')
/** The image the injector Deployment injects: `--sidecar-image` falls back to this variable, and no flag is set. */
function sidecarImage(dep: K8sObject): string {
  const c = podSpecOf(dep).containers[0] as Container & { args: string[] }
  assert.ok(!c.args.some((a) => a.startsWith('--sidecar-image')), 'the image is set in one place: the variable')
  return c.env?.find((e) => e.name === 'LATCHKEY_INJECTOR_SIDECAR_IMAGE')?.value ?? assert.fail('no LATCHKEY_INJECTOR_SIDECAR_IMAGE')
}

/** The restricted Pod Security profile (and the baseline rules it includes), plus our own: requests, pinned images, read-only root. */
function assertRestricted(spec: PodSpec, where: string): void {
  const pod = spec.securityContext ?? {}
  for (const f of ['hostNetwork', 'hostPID', 'hostIPC']) assert.notEqual(spec[f], true, `${where}: no ${f}`)
  assert.ok(!spec.volumes?.some((v) => 'hostPath' in v), `${where}: no hostPath`)
  for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
    const at = `${where} container ${c.name}`
    const sc = c.securityContext ?? {}
    assert.ok(sc.runAsNonRoot === true || (pod.runAsNonRoot === true && sc.runAsNonRoot !== false), `${at}: runAsNonRoot`)
    assert.notEqual(sc.runAsUser ?? pod.runAsUser, 0, `${at}: not uid 0`)
    assert.notEqual(sc.privileged, true, `${at}: not privileged`)
    assert.equal(sc.allowPrivilegeEscalation, false, `${at}: allowPrivilegeEscalation`)
    const caps = (sc.capabilities ?? {}) as Json
    assert.deepEqual(caps.drop, ['ALL'], `${at}: drop ALL`)
    assert.equal(caps.add, undefined, `${at}: no capabilities added`)
    assert.ok(!((c.ports ?? []) as Json[]).some((p) => p.hostPort !== undefined), `${at}: no hostPort`)
    assert.equal(((sc.seccompProfile ?? pod.seccompProfile) as Json | undefined)?.type, 'RuntimeDefault', `${at}: seccomp`)
    assert.equal(sc.readOnlyRootFilesystem, true, `${at}: read-only root filesystem`)
    assert.ok(c.resources?.requests?.cpu && c.resources.requests.memory, `${at}: resource requests`)
    assert.match(c.image, /^[^:]+(:[^:/]+)?:(?!latest$)[\w.-]+$/, `${at}: a pinned, non-latest image tag`)
  }
}

describe('Kubernetes manifests (deploy/kubernetes)', () => {
  it('every layout renders with the kustomize subset', () => {
    for (const d of LAYOUTS) assert.ok(all(d).length > 0, d)
    assert.deepEqual(
      all('base').map((o) => `${o.kind}/${o.metadata.name}`),
      ['ServiceAccount/pipeline', 'Job/pipeline-example', 'Deployment/pipeline-worker', 'ConfigMap/latchkey-config'],
    )
  })

  it('every rendered object validates against the Kubernetes OpenAPI schemas (kubernetes-models)', async () => {
    const noSchema: string[] = []
    for (const d of LAYOUTS) {
      for (const o of all(d)) {
        const r = await validateObject(o)
        if (r.ok === 'no-schema') noSchema.push(`${o.apiVersion} ${o.kind}`)
        else assert.deepEqual(r, { ok: true }, `${d}: ${o.kind}/${o.metadata.name}`)
      }
    }
    // cert-manager's Issuer and Certificate validate through @kubernetes-models/cert-manager.
    assert.deepEqual([...new Set(noSchema)].sort(), [])
    assert.ok(all('injector/cert-manager').some((o) => o.apiVersion === 'cert-manager.io/v1'), 'the cert-manager objects were among them')
  })

  it('no rendered object has a field the OpenAPI types do not define (typos would be dropped silently by the API server)', () => {
    const objects = LAYOUTS.flatMap((d) => all(d))
    assert.deepEqual(unknownFieldProblems(objects), [])
  })

  it('the schema checks are not vacuous: a broken copy of a manifest fails both', async () => {
    const job = structuredClone(find('base', 'Job'))
    const sidecar = podSpecOf(job).initContainers?.[0] as Container
    ;(sidecar as Json).ports = [{ containerPort: 'admin' }]
    assert.equal((await validateObject(job)).ok, false)
    ;(sidecar.securityContext as Json).readOnlyRootFileSystem = true
    const problems = unknownFieldProblems([job])
    assert.ok(problems.some((p) => p.includes("'\"readOnlyRootFileSystem\"' does not exist")), problems.join('\n'))
  })

  it('every embedded latchkey config passes latchkey check, binds the proxy to loopback and the admin listener to the probed port, and keeps interception state in the pod volumes', () => {
    const intercepting: string[] = []
    for (const d of [...WORKLOADS, ...EXAMPLES]) {
      const cm = find(d, 'ConfigMap')
      const text = (cm.data as Record<string, string>)['latchkey.yaml'] ?? assert.fail(`${d}: no latchkey.yaml`)
      const r = parseConfigText(text, { env: {}, baseDir: '/etc/latchkey', source: `${d}/latchkey.yaml` })
      assert.ok(r.ok, `${d}: ${JSON.stringify(!r.ok && r.issues)}`)
      assert.equal(r.config.listen.host, '127.0.0.1', `${d}: the proxy listener stays on loopback`)
      assert.deepEqual(r.config.admin.listen, { host: '0.0.0.0', port: SIDECAR.adminPort }, `${d}: kubelet probes reach the admin listener`)
      assert.equal(r.config.listen.port, SIDECAR.proxyPort)
      if (r.config.intercept.enabled) {
        intercepting.push(d)
        // The root filesystem is read-only: the CA must go to the emptyDirs the pod mounts.
        assert.ok(r.config.intercept.caDir.startsWith(`${POD_PATHS.stateDir}/`), `${d}: caDir in the latchkey-only emptyDir`)
        assert.equal(r.config.intercept.publicCaFile, `${POD_PATHS.sharedDir}/ca.pem`, `${d}: the public CA where the app's CA variables point`)
      }
    }
    assert.deepEqual(intercepting, ['examples/intercepted-job'])
  })

  it('the Job and the Deployment carry latchkey as a native sidecar identical to what the injector adds', () => {
    const plan = readAnnotations({ 'latchkey.dev/inject': 'true', 'latchkey.dev/config': 'latchkey-config', 'latchkey.dev/secret': 'pipeline-credentials' })
    assert.ok(plan.ok && plan.plan.inject)
    const expected = sidecarContainer(plan.plan, { ...SIDECAR, image: IMAGE })
    const expectedVolumes = sidecarVolumes(plan.plan, true)
    for (const o of podTemplates('base')) {
      const spec = podSpecOf(o)
      assert.deepEqual(spec.initContainers?.[0], expected, `${o.kind}: sidecar`)
      for (const v of expectedVolumes) assert.deepEqual(spec.volumes?.find((x) => x.name === v.name), v, `${o.kind}: volume ${String(v.name)}`)
    }
  })

  it('every pod meets the restricted Pod Security profile and requests resources', () => {
    for (const d of [...LAYOUTS]) {
      for (const o of podTemplates(d)) assertRestricted(podSpecOf(o), `${d} ${o.kind}/${o.metadata.name}`)
    }
  })

  it('the restricted-profile check is not vacuous: each forbidden setting on a copy of the base Job fails it', () => {
    const breaks: [string, (spec: PodSpec) => void][] = [
      ['capabilities added', (s) => ((s.containers[0]?.securityContext?.capabilities as Json).add = ['NET_ADMIN'])],
      ['privileged', (s) => ((s.containers[0]?.securityContext as Json).privileged = true)],
      ['hostPort', (s) => (((s.initContainers?.[0] as Json).ports as Json[])[0] = { containerPort: 8182, hostPort: 8182 })],
      ['hostNetwork', (s) => (s.hostNetwork = true)],
      ['hostPID', (s) => (s.hostPID = true)],
      ['uid 0', (s) => ((s.containers[0]?.securityContext as Json).runAsUser = 0)],
    ]
    for (const [what, edit] of breaks) {
      const spec = structuredClone(podSpecOf(find('base', 'Job')))
      edit(spec)
      assert.throws(() => assertRestricted(spec, 'copy'), assert.AssertionError, what)
    }
  })

  it('the app containers reach latchkey through the route URL or HTTP_PROXY, and NO_PROXY keeps loopback direct', () => {
    for (const d of WORKLOADS) {
      for (const o of podTemplates(d)) {
        for (const c of podSpecOf(o).containers) {
          const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]))
          assert.equal(env.LATCHKEY_URL, 'http://127.0.0.1:8181')
          assert.equal(env.HTTP_PROXY, 'http://127.0.0.1:8181')
          assert.match(env.NO_PROXY ?? '', /(^|,)127\.0\.0\.1(,|$)/)
        }
      }
    }
  })

  it('an injected app container gets the same variables as the app containers of the base manifests, and HTTPS_PROXY only with interception', () => {
    const envMap = (c: Container | undefined) => Object.fromEntries((c?.env ?? []).map((e) => [e.name, e.value]))
    const inject = (intercept: boolean) => {
      // The base Job's pod with the latchkey sidecar and the app's own variables taken out.
      const spec = structuredClone(podSpecOf(find('base', 'Job')))
      delete spec.initContainers
      spec.volumes = spec.volumes?.filter((v) => !v.name.startsWith('latchkey-'))
      for (const c of spec.containers) delete c.env
      const annotations = { 'latchkey.dev/inject': 'true', 'latchkey.dev/config': 'latchkey-config', ...(intercept ? { 'latchkey.dev/intercept': 'true' } : {}) }
      const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'pipelines', annotations }, spec }
      const r = reviewAdmission(admissionReview(pod), SIDECAR)
      assert.equal(r.outcome, 'injected')
      const patched = applyPatch(pod, JSON.parse(Buffer.from(r.review.response.patch ?? '', 'base64').toString('utf8')) as Operation[])
      return envMap((patched.spec as PodSpec).containers[0])
    }
    const injected = inject(false)
    for (const o of podTemplates('base')) assert.deepEqual(injected, envMap(podSpecOf(o).containers[0]), `${o.kind}: the injector and the hand-written manifest agree`)
    assert.equal(injected.HTTPS_PROXY, undefined, 'without interception CONNECT is refused, so https:// must not go through the proxy')
    const intercepted = inject(true)
    assert.equal(intercepted.HTTPS_PROXY, 'http://127.0.0.1:8181')
    assert.equal(intercepted.https_proxy, 'http://127.0.0.1:8181')
    for (const name of ['SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE']) assert.equal(intercepted[name], '/var/run/latchkey/ca-bundle.pem', name)
    assert.equal(intercepted.NODE_EXTRA_CA_CERTS, '/var/run/latchkey/ca.pem')
  })

  it('each overlay shows its workload identity the native way and drops the base example Secret', () => {
    const sa = (d: string) => find(d, 'ServiceAccount', 'pipeline').metadata.annotations ?? {}
    assert.match(sa('overlays/aws')['eks.amazonaws.com/role-arn'] ?? '', /^arn:aws:iam::\d{12}:role\//)
    assert.match(sa('overlays/gcp')['iam.gke.io/gcp-service-account'] ?? '', /@[\w-]+\.iam\.gserviceaccount\.com$/)
    assert.match(sa('overlays/azure')['azure.workload.identity/client-id'] ?? '', /^[0-9a-f-]{36}$/)
    for (const o of podTemplates('overlays/azure')) {
      assert.equal((o.spec as { template: { metadata: { labels: Json } } }).template.metadata.labels['azure.workload.identity/use'], 'true', o.kind)
    }
    for (const o of podTemplates('overlays/vault')) {
      const spec = podSpecOf(o)
      const token = spec.volumes?.find((v) => v.name === 'vault-token') as { projected: { sources: { serviceAccountToken: Json }[] } } | undefined
      assert.deepEqual(token?.projected.sources[0]?.serviceAccountToken, { audience: 'vault', expirationSeconds: 3600, path: 'token' })
      const mounts = (spec.initContainers?.[0] as unknown as { volumeMounts: { name: string }[] }).volumeMounts
      assert.ok(mounts.some((m) => m.name === 'vault-token'), 'the token is mounted into latchkey')
      assert.ok(!spec.containers.some((c) => JSON.stringify(c).includes('vault-token')), 'and into no app container')
    }
    for (const d of WORKLOADS.slice(1)) {
      for (const o of podTemplates(d)) assert.ok(!JSON.stringify(podSpecOf(o)).includes('latchkey-secret'), `${d} ${o.kind}`)
    }
    for (const d of WORKLOADS) assert.equal(find(d, 'ServiceAccount', 'pipeline').automountServiceAccountToken, false)
  })

  it('the webhook configuration is v1-only, side-effect free, fails closed and is scoped by namespace and object selectors', () => {
    const mwc = find('injector/base', 'MutatingWebhookConfiguration')
    const [hook, ...rest] = mwc.webhooks as Json[]
    assert.equal(rest.length, 0)
    assert.ok(hook)
    assert.deepEqual(hook.admissionReviewVersions, ['v1'])
    assert.equal(hook.sideEffects, 'None')
    assert.equal(hook.failurePolicy, 'Fail')
    assert.equal(hook.reinvocationPolicy, 'IfNeeded', 'containers added by later webhooks get the variables')
    assert.deepEqual((hook.namespaceSelector as Json).matchLabels, { 'latchkey.dev/injection': 'enabled' })
    assert.ok(JSON.stringify(hook.namespaceSelector).includes('latchkey-system'), 'the injector namespace is never selected')
    assert.deepEqual(hook.objectSelector, { matchExpressions: [{ key: 'latchkey.dev/inject', operator: 'NotIn', values: ['false'] }] })
    assert.deepEqual(hook.rules, [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }])
    const svc = find('injector/base', 'Service', 'latchkey-injector')
    assert.deepEqual((hook.clientConfig as Json).service, { name: svc.metadata.name, namespace: svc.metadata.namespace, path: '/mutate', port: 443 })
    const dep = find('injector/base', 'Deployment', 'latchkey-injector')
    const c = podSpecOf(dep).containers[0] as Container & { args: string[] }
    assert.equal(c.args[0], 'injector')
    assert.equal(sidecarImage(dep), c.image, 'the injected sidecar image is the injector image')
    assert.equal((dep.spec as Json).replicas, 2)
    assert.equal(find('injector/base', 'PodDisruptionBudget').kind, 'PodDisruptionBudget')
  })

  it('the failurePolicy patch in docs/injector.md applies to the webhook configuration and turns it to Ignore', async () => {
    const doc = await readFile(path.join(ROOT, '..', '..', 'docs', 'injector.md'), 'utf8')
    const block = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] as string).find((b) => b.includes('failurePolicy')) ?? assert.fail('no failurePolicy patch in docs/injector.md')
    const { patches } = parseYaml(block) as { patches: { target: { kind: string; name: string }; patch: string }[] }
    const [entry] = patches
    assert.deepEqual(entry?.target, { kind: 'MutatingWebhookConfiguration', name: 'latchkey-injector' })
    const mwc = find('injector/base', 'MutatingWebhookConfiguration')
    const patched = applyPatch(mwc, parseYaml(entry?.patch ?? '') as Operation[])
    assert.equal((patched.webhooks as Json[])[0]?.failurePolicy, 'Ignore')
    assert.deepEqual(await validateObject(patched), { ok: true })
  })

  it('the cert-manager layout signs the serving certificate with its own CA and injects that CA, so a renewal never leaves caBundle behind', async () => {
    const d = 'injector/cert-manager'
    type Cert = K8sObject & { spec: { secretName: string; isCA?: boolean; dnsNames?: string[]; issuerRef: { kind: string; name: string }; privateKey?: { rotationPolicy?: string }; duration?: string } }
    const certs = all(d).filter((o) => o.kind === 'Certificate') as Cert[]
    const issuers = all(d).filter((o) => o.kind === 'Issuer') as (K8sObject & { spec: Json })[]
    const issuer = (name: string) => issuers.find((i) => i.metadata.name === name) ?? assert.fail(`no Issuer ${name}`)
    const ca = certs.find((c) => c.spec.isCA === true) ?? assert.fail('no CA Certificate')
    const serving = certs.find((c) => c.spec.isCA !== true) ?? assert.fail('no serving Certificate')
    assert.equal(certs.length, 2)
    // self-signed Issuer -> CA Certificate -> CA Issuer -> serving Certificate
    assert.deepEqual(issuer(ca.spec.issuerRef.name).spec, { selfSigned: {} })
    assert.equal(ca.spec.issuerRef.kind, 'Issuer')
    const caIssuer = issuer(serving.spec.issuerRef.name)
    assert.deepEqual(caIssuer.spec, { ca: { secretName: ca.spec.secretName } }, 'the serving certificate is signed by the CA, not self-signed')
    assert.equal(serving.spec.issuerRef.kind, 'Issuer')
    for (const o of [...certs, ...issuers]) assert.equal(o.metadata.namespace, 'latchkey-system', `${o.kind}/${o.metadata.name}`)
    // The CA keeps its key on renewal, so serving certificates issued under it stay valid.
    assert.equal(ca.spec.privateKey?.rotationPolicy, 'Never')
    assert.ok(serving.spec.dnsNames?.includes('latchkey-injector.latchkey-system.svc'), 'the name the API server dials')
    const dep = find(d, 'Deployment', 'latchkey-injector')
    assert.ok(podSpecOf(dep).volumes?.some((v) => (v.secret as Json | undefined)?.secretName === serving.spec.secretName), 'the Deployment mounts the serving Secret')
    assert.ok(!JSON.stringify(podSpecOf(dep)).includes(ca.spec.secretName + '"'), 'the CA key is mounted nowhere')
    const mwc = find(d, 'MutatingWebhookConfiguration')
    assert.equal(mwc.metadata.annotations?.['cert-manager.io/inject-ca-from'], `${ca.metadata.namespace}/${ca.metadata.name}`, 'caBundle comes from the CA certificate')
    // The cert-manager schemas are really applied: a bad value fails them.
    const broken = structuredClone(ca) as Cert
    ;(broken.spec.privateKey as Json).rotationPolicy = 'Sometimes'
    assert.equal((await validateObject(broken)).ok, false)
    const typo = structuredClone(serving) as Cert & { spec: Json }
    typo.spec.renewbefore = '360h'
    assert.ok(unknownFieldProblems([typo]).some((p) => p.includes('renewbefore')), 'and an unknown field is reported')
  })

  for (const d of EXAMPLES) {
    it(`the annotated example Job in ${d}, sent through the injector, becomes a schema-valid, restricted pod with latchkey injected`, async () => {
      const job = find(d, 'Job')
      const template = (job.spec as { template: { metadata: Json & { annotations: Record<string, string> }; spec: PodSpec } }).template
      const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { ...template.metadata, generateName: 'pipeline-injected-', namespace: 'pipelines' }, spec: template.spec }
      const image = sidecarImage(find('injector/base', 'Deployment'))
      const result = reviewAdmission(admissionReview(pod), { ...SIDECAR, image })
      assert.equal(result.outcome, 'injected')
      const patched = applyPatch(pod, JSON.parse(Buffer.from(result.review.response.patch ?? '', 'base64').toString('utf8')) as Operation[])
      assert.deepEqual(await validateObject(patched), { ok: true })
      assert.deepEqual(unknownFieldProblems([patched]), [])
      const spec = patched.spec as PodSpec
      assert.equal(spec.initContainers?.[0]?.name, 'latchkey')
      assert.equal(spec.initContainers?.[0]?.image, image)
      assert.equal((spec.volumes?.find((v) => v.name === 'latchkey-config')?.configMap as Json).name, find(d, 'ConfigMap').metadata.name, 'the annotation names the example’s ConfigMap')
      assert.equal((spec.volumes?.find((v) => v.name === 'latchkey-secret')?.secret as Json).defaultMode, 0o440, 'group-readable through the pod fsGroup')
      // The injected pod is as locked down as the hand-written ones.
      assertRestricted(spec, `${d} injected pod`)
      const app = spec.containers[0] as Container & { volumeMounts?: { name: string; readOnly?: boolean }[] }
      const env = Object.fromEntries((app.env ?? []).map((e) => [e.name, e.value]))
      assert.equal(env.LATCHKEY_URL, 'http://127.0.0.1:8181')
      const intercept = template.metadata.annotations['latchkey.dev/intercept'] === 'true'
      assert.equal(env.HTTPS_PROXY, intercept ? 'http://127.0.0.1:8181' : undefined)
      assert.equal(env.SSL_CERT_FILE, intercept ? `${POD_PATHS.sharedDir}/ca-bundle.pem` : undefined)
      assert.deepEqual(app.volumeMounts?.find((m) => m.name === 'latchkey-shared')?.readOnly, intercept ? true : undefined, 'the public CA, read-only, only when intercepting')
    })
  }
})
