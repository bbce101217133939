/**
 * The AdmissionReview v1 exchange: a request from the API server in, a response out with the
 * same `uid`. Only Pod CREATE is mutated; everything else is allowed unchanged, so a webhook
 * registered too broadly cannot block unrelated objects.
 */
import { readAnnotations } from './annotations.ts'
import { podPatch, type PatchOperation } from './pod-patch.ts'
import type { Json, SidecarOptions } from './sidecar.ts'

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1'

export interface AdmissionResponse {
  uid: string
  allowed: boolean
  patchType?: 'JSONPatch'
  /** base64 of the JSON Patch document. */
  patch?: string
  status?: { code: number; reason: string; message: string }
}

export interface AdmissionReviewResponse {
  apiVersion: typeof ADMISSION_API_VERSION
  kind: 'AdmissionReview'
  response: AdmissionResponse
}

/** What happened, for the log line and the metrics of the caller. */
export type AdmissionOutcome = 'injected' | 'reinvoked' | 'skipped' | 'denied' | 'ignored'

/** Every outcome, for metrics that start at zero. */
export const ADMISSION_OUTCOMES: readonly AdmissionOutcome[] = ['injected', 'reinvoked', 'skipped', 'denied', 'ignored']

export interface AdmissionResult {
  review: AdmissionReviewResponse
  outcome: AdmissionOutcome
  /** `namespace/name` (or `generateName*`) of the pod, for logs. */
  pod: string
  /** JSON Patch operations applied (empty unless injected). */
  patch: PatchOperation[]
}

/** A request body that is not an AdmissionReview v1: answered with HTTP 400. */
export class BadAdmissionReview extends Error {
  override readonly name = 'BadAdmissionReview'
}

/**
 * Answer one AdmissionReview. Throws `BadAdmissionReview` when the body is not one (the API
 * server then applies the webhook's `failurePolicy`).
 */
export function reviewAdmission(body: unknown, sidecar: SidecarOptions): AdmissionResult {
  const review = asObject(body)
  if (review.apiVersion !== ADMISSION_API_VERSION || review.kind !== 'AdmissionReview') {
    throw new BadAdmissionReview(`expected apiVersion ${ADMISSION_API_VERSION} kind AdmissionReview`)
  }
  const request = asObject(review.request)
  if (typeof request.uid !== 'string' || request.uid === '') throw new BadAdmissionReview('request.uid is missing')
  const uid = request.uid
  const kind = asObject(request.kind)
  const pod = asObject(request.object)
  const meta = asObject(pod.metadata)
  const ns = typeof request.namespace === 'string' ? request.namespace : typeof meta.namespace === 'string' ? meta.namespace : ''
  const name = typeof meta.name === 'string' && meta.name !== '' ? meta.name : `${typeof meta.generateName === 'string' ? meta.generateName : ''}*`
  const label = ns ? `${ns}/${name}` : name
  const answer = (response: Omit<AdmissionResponse, 'uid'>, outcome: AdmissionOutcome, patch: PatchOperation[] = []): AdmissionResult => ({
    review: { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response: { uid, ...response } },
    outcome,
    pod: label,
    patch,
  })

  // Pods only (not their subresources such as pods/exec or pods/ephemeralcontainers), on CREATE.
  if (kind.group !== '' || kind.kind !== 'Pod' || (request.subResource !== undefined && request.subResource !== '') || request.operation !== 'CREATE') {
    return answer({ allowed: true }, 'ignored')
  }
  const annotations = readAnnotations(asObject(meta.annotations))
  if (!annotations.ok) {
    return answer({ allowed: false, status: deny(`latchkey injector refused pod ${label}: ${annotations.problems.join('; ')}`) }, 'denied')
  }
  const result = podPatch(pod, annotations.plan, sidecar)
  if (!result.ok) return answer({ allowed: false, status: deny(`latchkey injector refused pod ${label}: ${result.message}`) }, 'denied')
  if (!result.injected) return answer({ allowed: true }, 'skipped')
  // `reinvoked`: a later webhook added a container (or dropped a variable) and it was wired.
  return answer({ allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(result.patch)).toString('base64') }, result.reinvocation ? 'reinvoked' : 'injected', result.patch)
}

function deny(message: string): { code: number; reason: string; message: string } {
  return { code: 422, reason: 'Invalid', message }
}

function asObject(v: unknown): Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : {}
}
