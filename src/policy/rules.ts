import { normalizeRequestPath } from './request-path.ts'

/**
 * Method and path rules of one credential, compiled once at load. A glob matches a normalised
 * path (see request-path.ts): `*` is any run of characters within one segment, `**` as a whole
 * segment is zero or more segments. Neither wildcard matches an encoded `/` or `\` (`%2F`,
 * `%5C`): only a glob that spells one out does, so an upstream that decodes those before
 * resolving `..` cannot be walked out of an allowed subtree.
 */

export interface AllowRuleConfig {
  readonly methods: readonly string[]
  readonly paths: readonly string[]
}

export interface CompiledRule {
  /** Index in the credential's `allow` list, for logs and audit (`allow[2]`). */
  readonly index: number
  /** Upper-case methods; undefined = any method (`*`). */
  readonly methods: ReadonlySet<string> | undefined
  readonly paths: readonly CompiledGlob[]
}

export type PolicyDecision = { readonly allowed: true; readonly rule: number } | { readonly allowed: false; readonly rule: undefined }

export interface RuleProblem {
  readonly path: string
  readonly message: string
}

const METHOD_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
/**
 * A compiled glob: one entry per segment, `**` as itself, other segments as units (a `%XX` is
 * one unit) with `*` as the wildcard unit. Matching walks segments and units with a table,
 * never a backtracking regular expression, so a long hostile path costs time linear in its
 * length times the glob's.
 */
export type CompiledGlob = readonly (typeof ANY_SEGMENTS | readonly string[])[]

const ANY_SEGMENTS = '**'
const STAR = '*'

function units(segment: string): string[] {
  const out: string[] = []
  for (let i = 0; i < segment.length; i++) {
    if (segment[i] === '%') {
      out.push(segment.slice(i, i + 3))
      i += 2
    } else out.push(segment[i]!)
  }
  return out
}

function isEncodedSlash(unit: string): boolean {
  return unit === '%2F' || unit === '%5C'
}

/** Compile one glob; `problems` lists why it could never match a normalised path. */
export function compileGlob(glob: string, at: string, problems: RuleProblem[]): CompiledGlob | undefined {
  if (!glob.startsWith('/')) {
    problems.push({ path: at, message: `path glob "${glob}" must start with / (it is matched against the request path)` })
    return undefined
  }
  if (glob.includes('?') || glob.includes('#')) {
    problems.push({ path: at, message: `path glob "${glob}" holds ? or #: the query and fragment are never matched, only the path` })
    return undefined
  }
  // `*` is a path character, so normalising the glob leaves its wildcards where they are; a glob
  // not in normal form can never equal a normalised path.
  const normal = normalizeRequestPath(glob)
  if (!normal.ok) {
    problems.push({ path: at, message: `path glob "${glob}" can never match: ${normal.reason}` })
    return undefined
  }
  if (normal.path !== glob) {
    problems.push({ path: at, message: `path glob "${glob}" can never match: requests are matched in normal form (dot-segments resolved, unreserved characters decoded, upper-case %XX); write it as "${normal.path}"` })
    return undefined
  }
  const out: (typeof ANY_SEGMENTS | string[])[] = []
  for (const s of glob.split('/').slice(1)) {
    if (s === ANY_SEGMENTS) {
      if (out.at(-1) !== ANY_SEGMENTS) out.push(ANY_SEGMENTS)
    } else if (s.includes('**')) {
      problems.push({ path: at, message: `path glob "${glob}": ** must be a whole segment (/a/**/b); use * within a segment` })
      return undefined
    } else out.push(units(s))
  }
  return out
}

/** Wildcard match of one segment's units; `*` never takes an encoded slash. */
function segmentMatches(pattern: readonly string[], segment: readonly string[]): boolean {
  let p = 0
  let s = 0
  let starP = -1
  let starS = 0
  while (s < segment.length) {
    if (p < pattern.length && pattern[p] !== STAR && pattern[p] === segment[s]) {
      p++
      s++
    } else if (p < pattern.length && pattern[p] === STAR) {
      starP = p++
      starS = s
    } else if (starP !== -1 && !isEncodedSlash(segment[starS]!)) {
      p = starP + 1
      s = ++starS
    } else return false
  }
  while (p < pattern.length && pattern[p] === STAR) p++
  return p === pattern.length
}

/** Does a compiled glob match a normalised path? */
export function globMatches(glob: CompiledGlob, path: string): boolean {
  const segs = path.split('/').slice(1).map(units)
  // reach[j]: the glob entries so far can match the path's first j segments.
  let reach = new Array<boolean>(segs.length + 1).fill(false)
  reach[0] = true
  for (const g of glob) {
    const next = new Array<boolean>(segs.length + 1).fill(false)
    if (g === ANY_SEGMENTS) {
      let on = false
      for (let j = 0; j <= segs.length; j++) {
        on = on || reach[j]!
        next[j] = on
        // `**` spans whole segments, never one holding an encoded slash.
        if (j < segs.length && segs[j]!.some(isEncodedSlash)) on = false
      }
    } else {
      for (let j = 0; j < segs.length; j++) if (reach[j] && segmentMatches(g, segs[j]!)) next[j + 1] = true
    }
    reach = next
  }
  return reach[segs.length]!
}

/** Compile a credential's `allow` list; every problem is reported with its path. */
export function compileRules(rules: readonly AllowRuleConfig[], at: string, problems: RuleProblem[]): CompiledRule[] {
  const out: CompiledRule[] = []
  rules.forEach((rule, index) => {
    const here = `${at}[${index}]`
    let methods: Set<string> | undefined = new Set()
    if (rule.methods.length === 0) problems.push({ path: `${here}.methods`, message: 'methods is empty, so this rule can never match; list methods (GET, HEAD, ...) or "*"' })
    rule.methods.forEach((m, j) => {
      if (m === '*') methods = undefined
      else if (!METHOD_TOKEN.test(m)) problems.push({ path: `${here}.methods[${j}]`, message: `"${m}" is not an HTTP method` })
      else if (m !== m.toUpperCase()) problems.push({ path: `${here}.methods[${j}]`, message: `methods are case-sensitive and "${m}" can never match a standard request; did you mean "${m.toUpperCase()}"?` })
      else methods?.add(m)
    })
    if (rule.paths.length === 0) problems.push({ path: `${here}.paths`, message: 'paths is empty, so this rule can never match; use "/**" for every path' })
    const paths: CompiledGlob[] = []
    rule.paths.forEach((p, j) => {
      const g = compileGlob(p, `${here}.paths[${j}]`, problems)
      if (g) paths.push(g)
    })
    out.push({ index, methods, paths })
  })
  return out
}

/** The first rule that allows `method` on the normalised `path`, if any. */
export function decide(rules: readonly CompiledRule[], method: string, path: string): PolicyDecision {
  for (const r of rules) {
    if (r.methods !== undefined && !r.methods.has(method)) continue
    for (const g of r.paths) if (globMatches(g, path)) return { allowed: true, rule: r.index }
  }
  return { allowed: false, rule: undefined }
}
