import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { BadAdmissionReview, reviewAdmission, type AdmissionResult } from '../../src/injector/admission-review.ts'
import { readAnnotations } from '../../src/injector/annotations.ts'
import { POD_PATHS, sidecarNodeOptions } from '../../src/injector/sidecar.ts'
import { admissionReview, INJECT, pod, SIDECAR, type Pod } from './fixtures.ts'
import { applyPatch, type Operation } from './json-patch.ts'
import { validateObject } from './schema.ts'

/** Run the review, check the envelope, and return the patched pod (the original when there is no patch). */
async function admit(p: Pod, o: Parameters<typeof admissionReview>[1] = {}): Promise<{ result: AdmissionResult; patched: Pod; ops: Operation[] }> {
  const result = reviewAdmission(admissionReview(p, o), SIDECAR)
  const r = result.review
  assert.equal(r.apiVersion, 'admission.k8s.io/v1')
  assert.equal(r.kind, 'AdmissionReview')
  assert.equal(r.response.uid, o.uid ?? '705ab4f5-6393-11e8-b7cc-42010a800002')
  if (r.response.patch === undefined) {
    assert.equal(r.response.patchType, undefined)
    return { result, patched: p, ops: [] }
  }
  assert.equal(r.response.patchType, 'JSONPatch')
  const ops = JSON.parse(Buffer.from(r.response.patch, 'base64').toString('utf8')) as Operation[]
  assert.ok(Array.isArray(ops) && ops.length > 0)
  const patched = applyPatch(p, ops)
  const schema = await validateObject(patched)
  assert.deepEqual(schema, { ok: true }, `patched pod must validate against the Pod schema: ${JSON.stringify(schema)}`)
  return { result, patched, ops }
}

type C = Record<string, unknown> & { name: string; env?: { name: string; value?: string }[]; volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[] }
const envOf = (c: unknown) => Object.fromEntries(((c as C).env ?? []).map((e) => [e.name, e.value]))

describe('latchkey injector: AdmissionReview v1', () => {
  it('injects the native sidecar first among init containers of a plain annotated pod, with its volumes and the proxy variables', async () => {
    const { result, patched } = await admit(pod(INJECT))
    assert.equal(result.outcome, 'injected')
    assert.equal(result.review.response.allowed, true)
    const init = patched.spec.initContainers as C[]
    assert.equal(init.length, 1)
    const sidecar = init[0] as C
    assert.equal(sidecar.name, 'latchkey')
    assert.equal(sidecar.restartPolicy, 'Always')
    assert.equal(sidecar.image, SIDECAR.image)
    assert.deepEqual(sidecar.args, ['run', '-c', '/etc/latchkey/latchkey.yaml', '--admin-listen', '0.0.0.0:8182'])
    assert.deepEqual(sidecar.securityContext, {
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    })
    for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) assert.equal((sidecar[probe] as { httpGet: { port: string } }).httpGet.port, 'latchkey-admin')
    const volumes = patched.spec.volumes as { name: string; configMap?: { name: string } }[]
    assert.deepEqual(volumes.map((v) => v.name), ['latchkey-config', 'latchkey-state', 'latchkey-shared'])
    assert.equal(volumes[0]?.configMap?.name, 'latchkey-config')
    const env = envOf(patched.spec.containers[0])
    assert.equal(env.HTTP_PROXY, 'http://127.0.0.1:8181')
    assert.equal(env.http_proxy, 'http://127.0.0.1:8181')
    assert.equal(env.HTTPS_PROXY, undefined, 'HTTPS_PROXY only with latchkey.dev/intercept: CONNECT would be refused')
    assert.equal(env.https_proxy, undefined)
    assert.equal(env.LATCHKEY_URL, 'http://127.0.0.1:8181')
    assert.match(env.NO_PROXY ?? '', /127\.0\.0\.1/)
    assert.equal(env.SSL_CERT_FILE, undefined, 'CA variables only with latchkey.dev/intercept')
    assert.equal(patched.metadata.annotations?.['latchkey.dev/status'], 'injected')
    // The app container is otherwise untouched.
    assert.deepEqual(patched.spec.containers[0]?.command, ['python', 'train.py'])
  })

  it('caps the sidecar heap at 3/8 of its memory limit, following --memory-limit', async () => {
    assert.equal(sidecarNodeOptions('256Mi'), '--max-old-space-size=96 --max-semi-space-size=2')
    assert.equal(sidecarNodeOptions('1Gi'), '--max-old-space-size=384 --max-semi-space-size=2')
    assert.equal(sidecarNodeOptions('512M'), '--max-old-space-size=183 --max-semi-space-size=2')
    assert.equal(sidecarNodeOptions('64Mi'), '--max-old-space-size=32 --max-semi-space-size=2', 'never below 32 MiB')
    const r = reviewAdmission(admissionReview(pod(INJECT)), { ...SIDECAR, resources: { ...SIDECAR.resources, limits: { memory: '1Gi' } } })
    const ops = JSON.parse(Buffer.from(r.review.response.patch ?? '', 'base64').toString('utf8')) as Operation[]
    const sidecar = ((applyPatch(pod(INJECT), ops).spec.initContainers ?? []) as C[])[0] as C
    assert.deepEqual(sidecar.env, [{ name: 'NODE_OPTIONS', value: '--max-old-space-size=384 --max-semi-space-size=2' }])
    assert.deepEqual(sidecar.resources, { requests: SIDECAR.resources.requests, limits: { memory: '1Gi' } })
  })

  it('leaves an already injected pod alone, so injection is idempotent', async () => {
    const once = await admit(pod(INJECT))
    const twice = await admit(once.patched)
    assert.equal(twice.result.outcome, 'skipped')
    assert.equal(twice.result.review.response.allowed, true)
    assert.equal(twice.result.review.response.patch, undefined)
    // A pod that carries a latchkey container by hand (the base manifests) is left alone too.
    const manual = pod(INJECT, { initContainers: [{ name: 'latchkey', image: 'x:1', restartPolicy: 'Always' }] })
    assert.equal((await admit(manual)).result.outcome, 'skipped')
  })

  it('injects a pod that carries the injected marker but no latchkey container, instead of trusting the annotation', async () => {
    // The marker travels with copied metadata (a manifest saved from a running pod); the container did not.
    const copied = pod({ ...INJECT, 'latchkey.dev/status': 'injected' })
    const { result, patched } = await admit(copied)
    assert.equal(result.outcome, 'injected')
    assert.deepEqual((patched.spec.initContainers as C[]).map((c) => c.name), ['latchkey'])
    assert.equal(envOf(patched.spec.containers[0]).HTTP_PROXY, 'http://127.0.0.1:8181')
    assert.equal(patched.metadata.annotations?.['latchkey.dev/status'], 'injected')
    // And that result is itself left alone on a second pass.
    assert.equal((await admit(patched)).result.outcome, 'skipped')
  })

  it('wires every container of a multi-container pod and keeps a variable a container already sets', async () => {
    const p = pod(INJECT, {
      containers: [
        { name: 'train', image: 'python:3.12-slim' },
        { name: 'uploader', image: 'curlimages/curl:8.10.1', env: [{ name: 'LATCHKEY_URL', value: 'http://elsewhere:1' }, { name: 'KEEP', value: '1' }] },
        { name: 'metrics', image: 'busybox:1.36', env: [] },
      ],
    })
    const { patched } = await admit(p)
    const [train, uploader, metrics] = patched.spec.containers
    assert.equal(envOf(train).HTTP_PROXY, 'http://127.0.0.1:8181')
    assert.equal(envOf(uploader).LATCHKEY_URL, 'http://elsewhere:1', 'the container’s own value wins')
    assert.equal(envOf(uploader).http_proxy, 'http://127.0.0.1:8181')
    assert.equal(envOf(uploader).KEEP, '1')
    assert.equal((uploader as C).env?.filter((e) => e.name === 'LATCHKEY_URL').length, 1, 'no duplicate variable')
    assert.equal(envOf(metrics).HTTP_PROXY, 'http://127.0.0.1:8181')
  })

  it('puts the sidecar before existing init containers and gives them the proxy variables too', async () => {
    const p = pod(INJECT, {
      initContainers: [
        { name: 'fetch-data', image: 'python:3.12-slim', env: [{ name: 'DATASET', value: 's3://bucket/x' }] },
        { name: 'migrate', image: 'python:3.12-slim' },
      ],
      volumes: [{ name: 'data', emptyDir: {} }],
    })
    const { patched } = await admit(p)
    const init = patched.spec.initContainers as C[]
    assert.deepEqual(init.map((c) => c.name), ['latchkey', 'fetch-data', 'migrate'])
    assert.equal(envOf(init[1]).DATASET, 's3://bucket/x')
    assert.equal(envOf(init[1]).HTTP_PROXY, 'http://127.0.0.1:8181')
    assert.equal(envOf(init[2]).HTTP_PROXY, 'http://127.0.0.1:8181')
    assert.equal(envOf(init[0]).HTTP_PROXY, undefined, 'the sidecar itself gets no proxy variables')
    assert.deepEqual((patched.spec.volumes as { name: string }[]).map((v) => v.name), ['data', 'latchkey-config', 'latchkey-state', 'latchkey-shared'])
  })

  it('with latchkey.dev/intercept mounts the public CA read-only into app containers and sets the CA variables', async () => {
    const { patched } = await admit(pod({ ...INJECT, 'latchkey.dev/intercept': 'true', 'latchkey.dev/config-key': 'config.yaml' }))
    const app = patched.spec.containers[0] as C
    assert.deepEqual(app.volumeMounts, [{ name: 'latchkey-shared', mountPath: POD_PATHS.sharedDir, readOnly: true }])
    const env = envOf(app)
    assert.equal(env.SSL_CERT_FILE, '/var/run/latchkey/ca-bundle.pem')
    assert.equal(env.REQUESTS_CA_BUNDLE, '/var/run/latchkey/ca-bundle.pem')
    assert.equal(env.GIT_SSL_CAINFO, '/var/run/latchkey/ca-bundle.pem', 'git reads only GIT_SSL_CAINFO')
    assert.equal(env.NODE_EXTRA_CA_CERTS, '/var/run/latchkey/ca.pem')
    assert.equal(env.HTTPS_PROXY, 'http://127.0.0.1:8181', 'https:// through the proxy, intercepted')
    assert.equal(env.https_proxy, 'http://127.0.0.1:8181')
    const sidecar = (patched.spec.initContainers as C[])[0] as C
    assert.deepEqual(sidecar.args, ['run', '-c', '/etc/latchkey/config.yaml', '--admin-listen', '0.0.0.0:8182'])
    // The CA key's directory is mounted in the sidecar only.
    assert.ok(!app.volumeMounts?.some((m) => m.name === 'latchkey-state'))
  })

  it('with latchkey.dev/env "false" adds the sidecar but sets no variables', async () => {
    const { patched } = await admit(pod({ ...INJECT, 'latchkey.dev/env': 'false' }))
    assert.equal((patched.spec.initContainers as C[])[0]?.name, 'latchkey')
    assert.equal(patched.spec.containers[0]?.env, undefined)
  })

  it('with latchkey.dev/secret mounts that Secret into the latchkey container only, world-readable only when the pod has no fsGroup', async () => {
    const withSecret = { ...INJECT, 'latchkey.dev/secret': 'pipeline-credentials' }
    const { patched } = await admit(pod(withSecret))
    const sidecar = (patched.spec.initContainers as C[])[0] as C
    assert.deepEqual(sidecar.volumeMounts?.at(-1), { name: 'latchkey-secret', mountPath: '/var/run/secrets/latchkey', readOnly: true })
    assert.ok(!JSON.stringify(patched.spec.containers).includes('latchkey-secret'), 'no app container mounts it')
    const volume = (patched.spec.volumes as { name: string; secret?: { secretName: string; defaultMode: number } }[]).find((v) => v.name === 'latchkey-secret')
    assert.deepEqual(volume?.secret, { secretName: 'pipeline-credentials', defaultMode: 0o444 })
    const grouped = await admit(pod(withSecret, { securityContext: { fsGroup: 10001 } }))
    const v2 = (grouped.patched.spec.volumes as { name: string; secret?: { defaultMode: number } }[]).find((v) => v.name === 'latchkey-secret')
    assert.equal(v2?.secret?.defaultMode, 0o440)
  })

  for (const [title, annotations, expected] of [
    ['an invalid Secret name', { ...INJECT, 'latchkey.dev/secret': 'creds/../x' }, /latchkey\.dev\/secret: "creds\/..\/x" is not a valid Secret name/],
    ['a value other than "true" or "false"', { ...INJECT, 'latchkey.dev/inject': 'yes' }, /latchkey\.dev\/inject: "yes" is not "true" or "false"/],
    ['inject without a config name', { 'latchkey.dev/inject': 'true' }, /latchkey\.dev\/config is missing/],
    ['a config name that is not DNS-1123', { ...INJECT, 'latchkey.dev/config': 'Latchkey_Config' }, /"Latchkey_Config" is not a valid ConfigMap name \(a DNS-1123 subdomain/],
    ['a config name that is too long', { ...INJECT, 'latchkey.dev/config': 'a'.repeat(254) }, /is not a valid ConfigMap name/],
    ['an invalid config key', { ...INJECT, 'latchkey.dev/config-key': '../etc/passwd' }, /latchkey\.dev\/config-key: "..\/etc\/passwd" is not a valid ConfigMap key/],
    ['a misspelt latchkey annotation', { ...INJECT, 'latchkey.dev/intercpt': 'true' }, /unknown annotation latchkey\.dev\/intercpt/],
    ['a bad env flag', { ...INJECT, 'latchkey.dev/env': 'False' }, /latchkey\.dev\/env: "False" is not "true" or "false"/],
  ] as const) {
    it(`refuses a pod with ${title}, with a message that names the annotation`, async () => {
      const { result } = await admit(pod(annotations))
      assert.equal(result.outcome, 'denied')
      const r = result.review.response
      assert.equal(r.allowed, false)
      assert.equal(r.patch, undefined)
      assert.equal(r.status?.code, 422)
      assert.match(r.status?.message ?? '', /^latchkey injector refused pod pipelines\/train-model: /)
      assert.match(r.status?.message ?? '', expected)
    })
  }

  it('reports every annotation problem at once', () => {
    const r = readAnnotations({ 'latchkey.dev/inject': 'true', 'latchkey.dev/env': 'nope', 'latchkey.dev/foo': 'x' })
    assert.equal(r.ok, false)
    assert.equal(r.ok === false && r.problems.length, 3)
  })

  it('refuses hostNetwork pods and pods that already use a latchkey volume name', async () => {
    const host = await admit(pod(INJECT, { hostNetwork: true }))
    assert.match(host.result.review.response.status?.message ?? '', /hostNetwork/)
    const clash = await admit(pod(INJECT, { volumes: [{ name: 'latchkey-config', emptyDir: {} }] }))
    assert.match(clash.result.review.response.status?.message ?? '', /already has a volume named latchkey-config/)
  })

  it('allows pods without the annotation, or with inject "false", unchanged', async () => {
    for (const a of [undefined, { 'latchkey.dev/inject': 'false' }, { unrelated: 'x' }] as (Record<string, string> | undefined)[]) {
      const { result } = await admit(pod(a))
      assert.equal(result.outcome, 'skipped')
      assert.equal(result.review.response.allowed, true)
      assert.equal(result.review.response.patch, undefined)
    }
  })

  it('allows other kinds, other operations and subresources unchanged, even with bad annotations', async () => {
    const bad = pod({ 'latchkey.dev/inject': 'maybe' })
    const cases = [
      { kind: { group: 'apps', version: 'v1', kind: 'Deployment' } },
      { operation: 'DELETE' },
      { operation: 'UPDATE' },
      { operation: 'CONNECT', subResource: 'exec' },
      { subResource: 'ephemeralcontainers' },
    ]
    for (const c of cases) {
      const { result } = await admit(bad, c)
      assert.equal(result.outcome, 'ignored', JSON.stringify(c))
      assert.equal(result.review.response.allowed, true)
      assert.equal(result.review.response.patch, undefined)
    }
  })

  it('refuses a body that is not an AdmissionReview v1', () => {
    assert.throws(() => reviewAdmission({ apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: { uid: 'x' } }, SIDECAR), BadAdmissionReview)
    assert.throws(() => reviewAdmission({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: {} }, SIDECAR), /request\.uid/)
    assert.throws(() => reviewAdmission([], SIDECAR), BadAdmissionReview)
  })

  it('names a pod created from generateName in its messages', async () => {
    const p = pod({ 'latchkey.dev/inject': 'true' })
    delete p.metadata.name
    p.metadata.generateName = 'train-model-'
    const { result } = await admit(p)
    assert.match(result.review.response.status?.message ?? '', /pod pipelines\/train-model-\*/)
  })
})

/** The decoded patch of a review, or [] when there is none. */
function opsOf(result: AdmissionResult): Operation[] {
  const patch = result.review.response.patch
  return patch === undefined ? [] : (JSON.parse(Buffer.from(patch, 'base64').toString('utf8')) as Operation[])
}

describe('latchkey injector: proxy variable pairs', () => {
  const PROXY_CANARY = 'canary-proxy-password-8d41f0'
  for (const name of ['HTTP_PROXY', 'http_proxy']) {
    it(`refuses a container with its own ${name}, naming the variable and the ways out, never its value`, async () => {
      const p = pod(INJECT, { containers: [{ name: 'uploader', image: 'curlimages/curl:8.10.1', env: [{ name, value: `http://user:${PROXY_CANARY}@corp-proxy:3128` }] }] })
      const { result } = await admit(p)
      assert.equal(result.outcome, 'denied')
      const message = result.review.response.status?.message ?? ''
      assert.match(message, new RegExp(`container uploader sets its own ${name}: latchkey must be the proxy of the containers it serves and does not chain to another proxy`))
      assert.match(message, /HTTP_PROXY and http_proxy are one setting/)
      assert.match(message, /latchkey\.dev\/inject-containers/)
      assert.ok(!message.includes(PROXY_CANARY) && !message.includes('corp-proxy'), 'the proxy URL may hold a password: it is never quoted')
    })
  }

  it('refuses a container whose HTTP_PROXY comes from a valueFrom reference', async () => {
    const env = [{ name: 'HTTP_PROXY', valueFrom: { configMapKeyRef: { name: 'proxy', key: 'url' } } }]
    const { result } = await admit(pod(INJECT, { containers: [{ name: 'app', image: 'busybox:1.36', env }] }))
    assert.equal(result.outcome, 'denied')
    assert.match(result.review.response.status?.message ?? '', /container app sets its own HTTP_PROXY/)
  })

  it('sets both spellings when the container sets one of them empty, and adds nothing twice', async () => {
    const { patched } = await admit(pod(INJECT, { containers: [{ name: 'app', image: 'busybox:1.36', env: [{ name: 'http_proxy', value: '' }] }] }))
    const env = (patched.spec.containers[0] as C).env ?? []
    assert.deepEqual(env.filter((e) => /^http_proxy$/i.test(e.name)).map((e) => [e.name, e.value]), [
      ['http_proxy', 'http://127.0.0.1:8181'],
      ['HTTP_PROXY', 'http://127.0.0.1:8181'],
    ])
  })

  it('with interception refuses a container with its own https_proxy, and without interception leaves that pair to the container', async () => {
    const containers = [{ name: 'app', image: 'busybox:1.36', env: [{ name: 'https_proxy', value: 'http://corp-proxy:3128' }] }]
    const intercepted = await admit(pod({ ...INJECT, 'latchkey.dev/intercept': 'true' }, { containers }))
    assert.equal(intercepted.result.outcome, 'denied')
    assert.match(intercepted.result.review.response.status?.message ?? '', /sets its own https_proxy: .*HTTPS_PROXY and https_proxy are one setting/)
    const plain = await admit(pod(INJECT, { containers }))
    assert.equal(plain.result.outcome, 'injected')
    const env = envOf(plain.patched.spec.containers[0])
    assert.equal(env.https_proxy, 'http://corp-proxy:3128')
    assert.equal(env.HTTPS_PROXY, undefined)
  })

  it('merges a container\'s NO_PROXY (either spelling) with latchkey\'s and sets both spellings to the merged list', async () => {
    const { patched } = await admit(pod(INJECT, { containers: [{ name: 'app', image: 'busybox:1.36', env: [{ name: 'no_proxy', value: '.corp.example, 10.0.0.0/8,localhost' }] }] }))
    const env = envOf(patched.spec.containers[0])
    assert.equal(env.NO_PROXY, 'localhost,127.0.0.1,::1,.svc,.cluster.local,.corp.example,10.0.0.0/8')
    assert.equal(env.no_proxy, env.NO_PROXY)
    const fromRef = await admit(pod(INJECT, { containers: [{ name: 'app', image: 'busybox:1.36', env: [{ name: 'NO_PROXY', valueFrom: { configMapKeyRef: { name: 'p', key: 'k' } } }] }] }))
    assert.equal(fromRef.result.outcome, 'denied')
    assert.match(fromRef.result.review.response.status?.message ?? '', /sets NO_PROXY\/no_proxy from a valueFrom reference/)
  })
})

describe('latchkey injector: per-pod annotations', () => {
  it('latchkey.dev/image and the resource annotations set the sidecar\'s image, requests, limits and heap cap', async () => {
    const a = { ...INJECT, 'latchkey.dev/image': 'registry.internal:5000/latchkey:0.2.0', 'latchkey.dev/requests-cpu': '50m', 'latchkey.dev/requests-mem': '192Mi', 'latchkey.dev/limits-mem': '512Mi', 'latchkey.dev/limits-cpu': '1' }
    const { patched } = await admit(pod(a))
    const sidecar = (patched.spec.initContainers as C[])[0] as C
    assert.equal(sidecar.image, 'registry.internal:5000/latchkey:0.2.0')
    assert.deepEqual(sidecar.resources, { requests: { cpu: '50m', memory: '192Mi' }, limits: { memory: '512Mi', cpu: '1' } })
    assert.deepEqual(sidecar.env, [{ name: 'NODE_OPTIONS', value: '--max-old-space-size=192 --max-semi-space-size=2' }])
    // One annotation alone keeps the injector's other defaults.
    const one = await admit(pod({ ...INJECT, 'latchkey.dev/requests-cpu': '100m' }))
    assert.deepEqual(((one.patched.spec.initContainers as C[])[0] as C).resources, { requests: { cpu: '100m', memory: SIDECAR.resources.requests.memory }, limits: SIDECAR.resources.limits })
  })

  for (const [title, annotations, expected] of [
    ['a bad quantity', { 'latchkey.dev/limits-mem': '512m' }, /latchkey\.dev\/limits-mem 512m: "m" means thousandths of a byte/],
    ['a zero quantity', { 'latchkey.dev/requests-cpu': '0' }, /latchkey\.dev\/requests-cpu: "0" must be more than zero/],
    ['a request above the limit', { 'latchkey.dev/requests-mem': '1Gi' }, /the sidecar's memory request \(1Gi\) is above its limit \(256Mi\)/],
    ['an image that is not a reference', { 'latchkey.dev/image': 'https://evil.example/x y' }, /latchkey\.dev\/image: "https:\/\/evil\.example\/x y" is not an image reference/],
    ['a bad container list', { 'latchkey.dev/inject-containers': 'train,,Upload' }, /latchkey\.dev\/inject-containers: "train,,Upload" is not a comma-separated list of container names/],
  ] as const) {
    it(`refuses a pod with ${title}, naming the annotation`, async () => {
      const { result } = await admit(pod({ ...INJECT, ...annotations }))
      assert.equal(result.outcome, 'denied')
      assert.match(result.review.response.status?.message ?? '', expected)
    })
  }

  it('latchkey.dev/inject-containers wires only the named containers (init or regular); the others are untouched', async () => {
    const p = pod({ ...INJECT, 'latchkey.dev/inject-containers': 'train, fetch', 'latchkey.dev/intercept': 'true' }, {
      initContainers: [{ name: 'fetch', image: 'busybox:1.36' }, { name: 'chown', image: 'busybox:1.36' }],
      containers: [
        { name: 'train', image: 'python:3.12-slim' },
        // Its own proxy is no reason to refuse the pod: latchkey does not touch this container.
        { name: 'istio-like', image: 'envoy:1', env: [{ name: 'HTTP_PROXY', value: 'http://corp-proxy:3128' }] },
      ],
    })
    const { result, patched } = await admit(p)
    assert.equal(result.outcome, 'injected')
    const [sidecar, fetch, chown] = patched.spec.initContainers as C[]
    assert.equal(sidecar?.name, 'latchkey')
    assert.equal(envOf(fetch).HTTP_PROXY, 'http://127.0.0.1:8181')
    assert.equal(chown?.env, undefined)
    assert.equal(chown?.volumeMounts, undefined)
    assert.equal(envOf(patched.spec.containers[0]).HTTPS_PROXY, 'http://127.0.0.1:8181')
    assert.deepEqual(patched.spec.containers[1], p.spec.containers[1])
  })
})

describe('latchkey injector: reinvocation', () => {
  it('wires containers a later webhook added, with no duplicate operation, and a third call changes nothing', async () => {
    const a = { ...INJECT, 'latchkey.dev/intercept': 'true' }
    const first = await admit(pod(a, { initContainers: [{ name: 'fetch', image: 'busybox:1.36' }] }))
    assert.equal(first.result.outcome, 'injected')
    // Another mutating webhook appends a container and an init container after latchkey's pass.
    const mutated = structuredClone(first.patched)
    mutated.spec.containers.push({ name: 'log-shipper', image: 'fluent-bit:3', env: [{ name: 'LEVEL', value: 'info' }] })
    ;(mutated.spec.initContainers as C[]).push({ name: 'vault-agent-init', image: 'vault:1' })
    const second = await admit(mutated)
    assert.equal(second.result.outcome, 'reinvoked')
    assert.ok(second.ops.every((o) => /^\/spec\/(containers\/1|initContainers\/2)\//.test(o.path)), `only the new containers are touched: ${JSON.stringify(second.ops.map((o) => o.path))}`)
    const shipper = second.patched.spec.containers[1] as C
    assert.equal(envOf(shipper).HTTP_PROXY, 'http://127.0.0.1:8181')
    assert.equal(envOf(shipper).LEVEL, 'info')
    assert.deepEqual(shipper.volumeMounts, [{ name: 'latchkey-shared', mountPath: POD_PATHS.sharedDir, readOnly: true }])
    assert.equal(envOf((second.patched.spec.initContainers as C[])[2]).SSL_CERT_FILE, '/var/run/latchkey/ca-bundle.pem')
    assert.deepEqual((second.patched.spec.initContainers as C[]).map((c) => c.name), ['latchkey', 'fetch', 'vault-agent-init'], 'no second sidecar')
    assert.equal((second.patched.spec.volumes as unknown[]).length, 3, 'no second set of volumes')
    const third = await admit(second.patched)
    assert.equal(third.result.outcome, 'skipped')
    assert.deepEqual(opsOf(third.result), [])
  })

  it('refuses, on reinvocation, a container a later webhook added with its own proxy', async () => {
    const first = await admit(pod(INJECT))
    const mutated = structuredClone(first.patched)
    mutated.spec.containers.push({ name: 'egress', image: 'squid-client:1', env: [{ name: 'HTTP_PROXY', value: 'http://corp-proxy:3128' }] })
    const second = await admit(mutated)
    assert.equal(second.result.outcome, 'denied')
    assert.match(second.result.review.response.status?.message ?? '', /container egress sets its own HTTP_PROXY/)
  })
})
