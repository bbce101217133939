/**
 * Runs `start()` unless `signal` already fired, then settles with its outcome, or rejects
 * with `abortError()` as soon as `signal` fires. For SDK calls that take no signal of their
 * own (node-vault, the AWS credential chain): the call keeps running after an abort (each
 * SDK bounds it by its own timeout) and its late outcome is ignored.
 *
 * @param start begins the work; not called when `signal` is already aborted
 * @param signal latchkey's deadline / shutdown signal for this fetch
 * @param abortError the error to reject with on abort (each provider maps its own)
 */
export function raceAbort<T>(start: () => Promise<T>, signal: AbortSignal, abortError: () => Error): Promise<T> {
  if (signal.aborted) return Promise.reject(abortError())
  const p = start()
  // A rejection after the abort has nobody left to hear it: keep it from being unhandled.
  p.catch(() => undefined)
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError())
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}
