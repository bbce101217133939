/** Pods and AdmissionReview requests for the injector tests. */
import { DEFAULT_SIDECAR_OPTIONS, type SidecarOptions } from '../../src/injector/sidecar.ts'

export const SIDECAR: SidecarOptions = { ...DEFAULT_SIDECAR_OPTIONS, image: 'ghcr.io/latchkey-dev/latchkey:0.1.0' }

export type Pod = {
  apiVersion: 'v1'
  kind: 'Pod'
  metadata: { name?: string; generateName?: string; namespace?: string; annotations?: Record<string, string>; labels?: Record<string, string> }
  spec: Record<string, unknown> & { containers: Record<string, unknown>[]; initContainers?: Record<string, unknown>[]; volumes?: Record<string, unknown>[] }
}

export function pod(annotations: Record<string, string> | undefined, spec: Partial<Pod['spec']> = {}): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'train-model', namespace: 'pipelines', ...(annotations ? { annotations } : {}) },
    spec: {
      containers: [{ name: 'train', image: 'python:3.12-slim', command: ['python', 'train.py'] }],
      ...spec,
    },
  }
}

export const INJECT = { 'latchkey.dev/inject': 'true', 'latchkey.dev/config': 'latchkey-config' }

export function admissionReview(object: unknown, o: { uid?: string; operation?: string; kind?: { group: string; version: string; kind: string }; subResource?: string } = {}) {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: o.uid ?? '705ab4f5-6393-11e8-b7cc-42010a800002',
      kind: o.kind ?? { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      ...(o.subResource ? { subResource: o.subResource } : {}),
      namespace: 'pipelines',
      operation: o.operation ?? 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:job-controller' },
      object,
      dryRun: false,
    },
  }
}
