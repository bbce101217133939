import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { normalizeRequestPath } from '../../src/policy/request-path.ts'
import { compileRules, decide, type RuleProblem } from '../../src/policy/rules.ts'

/**
 * An independent oracle: how a strict server that fully percent-decodes each segment, then
 * resolves dot-segments, would see a request path; and whether that view is inside the rules.
 * It shares no code with src/policy: decoding is done per byte, matching by recursion over
 * decoded segments. When it cannot tell (a segment decodes to a / or \), it refuses.
 */
type View = { ok: true; segments: string[] } | { ok: false }

function decodeSegment(raw: string): string | undefined {
  let out = ''
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === '%') {
      const hex = raw.slice(i + 1, i + 3)
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) return undefined
      out += String.fromCharCode(parseInt(hex, 16))
      i += 2
    } else out += raw[i]
  }
  return out
}

function oracleView(target: string): View {
  const path = target.split('#')[0]!.split('?')[0]!
  if (path === '') return { ok: true, segments: [''] }
  if (!path.startsWith('/')) return { ok: false }
  const stack: string[] = []
  const raw = path.slice(1).split('/')
  for (let i = 0; i < raw.length; i++) {
    const d = decodeSegment(raw[i]!)
    if (d === undefined || d.includes('/') || d.includes('\\')) return { ok: false }
    const last = i === raw.length - 1
    if (d === '.') {
      if (last) stack.push('')
    } else if (d === '..') {
      if (stack.length === 0) return { ok: false }
      stack.pop()
      if (last) stack.push('')
    } else stack.push(d)
  }
  return { ok: true, segments: stack }
}

/** Rule globs as decoded segment patterns; `*` any run within a segment, `**` any segments. */
function segMatch(pattern: string, s: string): boolean {
  const re = new RegExp('^' + pattern.split('*').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[^]*') + '$')
  return re.test(s)
}
function oracleMatches(glob: string[], segs: string[]): boolean {
  if (glob.length === 0) return segs.length === 0
  const [g, ...rest] = glob
  if (g === '**') {
    for (let k = 0; k <= segs.length; k++) if (oracleMatches(rest, segs.slice(k))) return true
    return false
  }
  return segs.length > 0 && segMatch(g!, segs[0]!) && oracleMatches(rest, segs.slice(1))
}

const RULES = [
  { methods: ['GET', 'HEAD'], paths: ['/public/**', '/v1/items/*'] },
  { methods: ['POST'], paths: ['/v1/items/*/comments', '/upload/a%20b/*'] },
  { methods: ['GET'], paths: ['/caf%C3%A9/*'] },
]
const problems: RuleProblem[] = []
const compiled = compileRules(RULES, 'allow', problems)
assert.deepEqual(problems, [])

function oracleAllows(method: string, target: string): boolean {
  const view = oracleView(target)
  if (!view.ok) return false
  return RULES.some((r) => r.methods.includes(method) && r.paths.some((p) => oracleMatches(p.slice(1).split('/').map((s) => decodeSegment(s)!), view.segments)))
}

const fixedPieces = fc.constantFrom(
  'public', 'v1', 'items', 'comments', 'upload', 'admin', 'a b', 'a%20b', '%61dmin', 'PUBLIC', 'Public',
  '.', '..', '%2e', '%2E%2e', '.%2E', '%2F', '..%2F', '%5C', '..%5C', '\\', '..\\', '', '%00', '%zz', '%', '%2',
  '\u00c3\u00a9', ';', ';x=1', '?q=/admin', '#/admin', '?', '%3F', '%23', '~', '%7E', '*', '42', 'x'.repeat(300),
  // Unicode look-alikes of `.` and `/` and overlong encodings: never a separator or a dot-segment.
  'caf%C3%A9', 'caf%c3%a9', 'caf\u00c3\u00a9', 'CAF%C3%89', 'cafe%CC%81',
  '%EF%BC%8E', '%EF%BC%8F', '\u00ef\u00bc\u008e\u00ef\u00bc\u008e', '%C0%AE%C0%AE', '%C0%AF', '%E2%88%95', '%E2%80%A8',
)
/** Any Unicode text as a client puts it in a path: percent-encoded UTF-8, or its raw UTF-8 bytes (Node reads them as latin1). */
const unicodePieces = fc
  .string({ unit: 'grapheme', minLength: 1, maxLength: 6 })
  .chain((u) => fc.constantFrom(encodeURIComponent(u), Buffer.from(u, 'utf8').toString('latin1')))
const pieces = fc.oneof({ weight: 6, arbitrary: fixedPieces }, { weight: 1, arbitrary: unicodePieces })
const targetArb = fc
  .tuple(fc.array(pieces, { maxLength: 12 }), fc.constantFrom('', '/'), fc.constantFrom('/', ''))
  .map(([parts, lead, trail]) => lead + parts.join('/') + (parts.length ? trail : ''))
const methodArb = fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'get')

test('no generated request is forwarded with the credential while the independent oracle refuses the path sent', () => {
  fc.assert(
    fc.property(methodArb, targetArb, (method, target) => {
      const n = normalizeRequestPath(target)
      if (!n.ok) return
      if (decide(compiled, method, n.path).allowed) {
        // The upstream receives n.path (latchkey forwards the normalised path), so that is what must be inside the rules.
        assert.ok(oracleAllows(method, n.path), `allowed but the oracle refuses: ${method} ${JSON.stringify(target)} -> ${n.path}`)
      }
    }),
    { numRuns: 20_000 },
  )
})

test('for every path a decoding server reads unambiguously, the path sent upstream means the same', () => {
  fc.assert(
    fc.property(targetArb, (target) => {
      const n = normalizeRequestPath(target)
      if (!n.ok) return
      // Normalising is idempotent: what is sent is already in the form that was matched.
      assert.equal((normalizeRequestPath(n.path) as { path: string }).path, n.path)
      const before = oracleView(target)
      if (!before.ok) return
      const after = oracleView(n.path)
      assert.deepEqual(after, before, `the upstream would see another path: ${JSON.stringify(target)} -> ${n.path}`)
    }),
    { numRuns: 20_000 },
  )
})
