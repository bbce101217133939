import type { Dispatcher } from 'undici'
import { errors, type LatchkeyError } from '../errors.ts'
import type { BoundExchange } from '../inject/inject-step.ts'
import { failUnsent, type ExchangeOptions } from '../observe/request-record.ts'
import { normalizeRequestPath } from './request-path.ts'
import { decide } from './rules.ts'

/**
 * The method/path rules of the request's credential (`allow`). Runs before the inject step, so
 * a refused request never waits for a secret. The path is normalised once (request-path.ts)
 * and the normalised path (plus the query as received) is what goes upstream: what was matched
 * is what is sent. A credential without rules, and a request without a credential, pass on
 * untouched.
 */
export function policyStep(): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) =>
    function policy(opts, handler) {
      const ex = (opts as ExchangeOptions).exchange as BoundExchange
      const rules = ex.binding?.rules
      if (rules === undefined) return dispatch(opts, handler)
      const n = normalizeRequestPath(opts.path)
      if (!n.ok) return refuse(ex, handler, errors.bad_request(`the request path cannot be matched against credential ${ex.binding?.name}'s rules: ${n.reason}`))
      const d = decide(rules, opts.method, n.path)
      if (!d.allowed) return refuse(ex, handler, errors.policy_denied(`credential ${ex.binding?.name} does not allow ${opts.method} ${n.path}`))
      ex.rule = d.rule
      const path = n.path + n.query
      ex.path = path
      return dispatch(path === opts.path ? opts : { ...opts, path }, handler)
    }
}

/** A refusal as the pipeline reports one: the request starts and fails with a registry error, nothing is sent. */
function refuse(ex: BoundExchange, handler: Dispatcher.DispatchHandler, err: LatchkeyError): boolean {
  ex.outcome = 'refused'
  failUnsent(handler, err)
  return true
}
