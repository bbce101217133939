import type { Dispatcher } from 'undici'
import type { CompiledCredential } from '../config/load.ts'
import { errors, LatchkeyError } from '../errors.ts'
import type { AuditSink } from '../observe/audit.ts'
import { observeStep, type Exchange, type Mode, type Outcome } from '../observe/request-record.ts'
import { policyStep } from '../policy/policy-step.ts'
import type { SecretValue } from '../providers/secret-value.ts'
import { mapUpstreamError } from '../http/upstream-error.ts'
import { injectStep, type BoundExchange, type InjectDeps } from './inject-step.ts'
import { sigv4Step } from './sigv4-step.ts'

export type Step = Dispatcher.DispatcherComposeInterceptor

/**
 * The credential pipeline every way in shares (route, forward proxy, intercepted tunnel,
 * in-process shim): steps in order, outermost first, each `dispatch => dispatch`, ending
 * in `send` (an undici Agent's dispatch, or the application's). A new step (a policy check,
 * a request signer) is one more entry in this list; it reads the request from the dispatch
 * options (`method`, `path`, `headers`, `body`, `origin`) and its record from `opts.exchange`.
 */
export function createPipeline(deps: InjectDeps & { readonly audit?: AuditSink | undefined }, send: Dispatcher.Dispatch): Dispatcher.Dispatch {
  const steps: readonly Step[] = [
    observeStep({ logger: deps.logger, metrics: deps.metrics, classify, audit: deps.audit }),
    // Before inject: a refused request never waits for a secret.
    policyStep(),
    injectStep(deps),
    sigv4Step(),
  ]
  return steps.reduceRight<Dispatcher.Dispatch>((next, step) => step(next), send)
}

/** Any failure as a registry error: ours as they are, transport errors by their code. */
export function classify(err: Error, ex: Exchange): LatchkeyError {
  if (err instanceof LatchkeyError) return err
  const m = mapUpstreamError(err, ex.host)
  return errors[m.code](m.message, { cause: err })
}

/** One request's record; a class so every record has the same shape. */
export class RequestExchange implements BoundExchange {
  readonly mode: Mode
  readonly binding: CompiledCredential | undefined
  readonly credentialName: string | undefined
  readonly provider: string | undefined
  readonly host: string
  readonly route: string | undefined
  readonly method: string
  path: string
  readonly started = performance.now()
  outcome: Outcome
  status = 0
  failure: LatchkeyError | undefined = undefined
  rule: number | undefined = undefined
  secret: SecretValue | undefined = undefined
  bytesIn = 0
  bytesOut = 0
  readonly traceparent: string | undefined

  constructor(mode: Mode, binding: CompiledCredential | undefined, host: string, route: string | undefined, method: string, path: string, traceparent?: string) {
    this.mode = mode
    this.binding = binding
    this.credentialName = binding?.name
    this.provider = binding?.provider
    this.traceparent = traceparent
    this.host = host
    this.route = route
    this.method = method
    this.path = path
    this.outcome = binding === undefined ? 'passthrough' : 'injected'
  }
}
