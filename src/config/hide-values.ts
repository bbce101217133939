import type { ConfigIssue } from '../errors.ts'
import type { InterpolatedValue, InterpolationSources } from './interpolate.ts'

/**
 * Below this length a value is only hidden in messages about its own path (or a parent's):
 * replacing a short value everywhere would garble unrelated messages, and a value that
 * short is not a secret worth the damage.
 */
const HIDE_EVERYWHERE_FROM = 6
const QUOTED = /"(?:[^"\\]|\\.)*"/g

/**
 * `check` prints messages that quote offending values (`invalid duration "..."`). A value
 * that came from `${env:...}` or `${file:...}` may be a secret placed under the wrong key,
 * so every message names the reference instead: `invalid duration (value of ${env:TOKEN})`.
 * Quoted parts of the value (a truncated header name, a label of a host pattern) are
 * replaced too.
 */
export function hideInterpolatedValues(issues: readonly ConfigIssue[], sources: InterpolationSources): ConfigIssue[] {
  if (sources.size === 0) return [...issues]
  return issues.map((i) => ({ path: i.path, message: hideInMessage(i.message, i.path, sources) }))
}

/** The same for free text (start-up warnings), with no path to relate the values to. */
export function hideInText(text: string, sources: InterpolationSources): string {
  return sources.size === 0 ? text : hideInMessage(text, undefined, sources)
}

function hideInMessage(message: string, at: string | undefined, sources: InterpolationSources): string {
  let m = message
  for (const [valuePath, v] of sources) {
    const near = at !== undefined && related(at, valuePath)
    m = hideOne(m, v, near)
  }
  return m
}

function hideOne(message: string, v: InterpolatedValue, near: boolean): string {
  const shown = (s: string) => near || s.length >= HIDE_EVERYWHERE_FROM
  const parts = v.parts.filter((p) => p.value !== '' && shown(p.value))
  const label = v.parts.length === 1 && v.template === v.parts[0]?.ref ? `(value of ${v.template})` : `(value of ${JSON.stringify(v.template)})`
  let m = message
  if (v.resolved !== '' && shown(v.resolved)) m = m.split(JSON.stringify(v.resolved)).join(label)
  // Inside quotes: a segment holding a part gets the reference back; a segment that is a piece of a part is named as such.
  m = m.replace(QUOTED, (q) => {
    let s: string
    try {
      s = JSON.parse(q) as string
    } catch {
      return q
    }
    let changed = false
    for (const p of parts) {
      if (s.toLowerCase().includes(p.value.toLowerCase())) {
        s = s.replace(new RegExp(escapeRegExp(p.value), 'gi'), () => p.ref)
        changed = true
      } else if (near && s.length >= 3 && p.value.toLowerCase().includes(s.toLowerCase())) {
        return `(part of ${p.ref})`
      }
    }
    return changed ? JSON.stringify(s) : q
  })
  // Unquoted echoes (a resolved file path, `*.<suffix>`): long values only, so words of the message survive.
  // Without regard to case: a message may quote a value lower-cased (host names are normalised).
  for (const p of parts) if (p.value.length >= HIDE_EVERYWHERE_FROM) m = m.replace(new RegExp(escapeRegExp(p.value), 'gi'), () => p.ref)
  return m
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** Same path, or one is inside the other (`credentials.a.inject` and `credentials.a.inject.header`). */
function related(issuePath: string, valuePath: string): boolean {
  if (issuePath === '' || issuePath === valuePath) return true
  const inside = (a: string, b: string) => a.startsWith(b + '.') || a.startsWith(b + '[')
  return inside(valuePath, issuePath) || inside(issuePath, valuePath)
}
