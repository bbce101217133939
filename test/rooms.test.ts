/**
 * The rooms of src/ (its folders, and its top-level files each as a room of its own) import
 * each other without a cycle: a helper two rooms need lives in a leaf both may use. Runtime
 * imports only (`import type` is erased and creates no dependency).
 */
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import test from 'node:test'
import { fileURLToPath } from 'node:url'

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'src')

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? tsFiles(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []))
}

/** `src/proxy/edge.ts` → `proxy`; `src/broker.ts` → `broker.ts`. */
function roomOf(file: string): string {
  return path.relative(SRC, file).split(path.sep)[0]!
}

/** Relative specifiers a file imports at run time: `import type …` and all-type `{ type A, type B }` lists left out. */
export function runtimeImports(source: string): string[] {
  const out: string[] = []
  for (const m of source.matchAll(/^(?:import|export)\s+(?!type\s)((?:(?!\n(?:import|export)\s)[^;])*?)\s+from\s+'(\.[^']+)'/gm)) {
    const clause = m[1]!.trim()
    if (/^\{\s*(?:type\s+[^,}]+,?\s*)+\}$/.test(clause)) continue
    out.push(m[2]!)
  }
  for (const m of source.matchAll(/\bimport\(\s*'(\.[^']+)'\s*\)/g)) out.push(m[1]!)
  return out
}

function roomGraph(): Map<string, Map<string, string>> {
  const edges = new Map<string, Map<string, string>>()
  for (const file of tsFiles(SRC)) {
    const from = roomOf(file)
    for (const spec of runtimeImports(readFileSync(file, 'utf8'))) {
      const to = roomOf(path.resolve(path.dirname(file), spec))
      if (to === from || to.startsWith('..')) continue
      if (!edges.has(from)) edges.set(from, new Map())
      edges.get(from)!.set(to, `${path.relative(SRC, file)} → ${spec}`)
    }
  }
  return edges
}

/** A cycle through the graph as a list of `room: file → import` steps, or undefined. */
function findCycle(edges: Map<string, Map<string, string>>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>()
  const stack: string[] = []
  const visit = (room: string): string[] | undefined => {
    state.set(room, 'open')
    stack.push(room)
    for (const [next] of edges.get(room) ?? []) {
      if (state.get(next) === 'open') {
        const loop = [...stack.slice(stack.indexOf(next)), next]
        return loop.slice(0, -1).map((r, i) => `${r}: ${edges.get(r)!.get(loop[i + 1]!)}`)
      }
      if (state.get(next) === undefined) {
        const found = visit(next)
        if (found) return found
      }
    }
    stack.pop()
    state.set(room, 'done')
    return undefined
  }
  for (const room of edges.keys()) {
    if (state.get(room) !== undefined) continue
    const found = visit(room)
    if (found) return found
  }
  return undefined
}

test('no two rooms of src/ depend on each other, directly or through others', () => {
  const cycle = findCycle(roomGraph())
  assert.equal(cycle, undefined, `a cycle between rooms:\n${cycle?.join('\n')}`)
})

test('the import reader sees runtime imports, multi-line ones and dynamic ones, and leaves type-only imports out', () => {
  const src = [
    "import type { A } from './a.ts'",
    "import { type B, type C } from './bc.ts'",
    "import { d, type E } from './de.ts'",
    'import {',
    '  f,',
    '  g,',
    "} from '../fg.ts'",
    "export { h } from './h.ts'",
    "const i = await import('./i.ts')",
    "import x from 'undici'",
  ].join('\n')
  assert.deepEqual(runtimeImports(src), ['./de.ts', '../fg.ts', './h.ts', './i.ts'])
})

test('a cycle is found and named with the imports that make it', () => {
  const edges = new Map([
    ['a', new Map([['b', 'a/x.ts → ../b/y.ts']])],
    ['b', new Map([['c', 'b/y.ts → ../c/z.ts']])],
    ['c', new Map([['a', 'c/z.ts → ../a/x.ts']])],
  ])
  assert.deepEqual(findCycle(edges), ['a: a/x.ts → ../b/y.ts', 'b: b/y.ts → ../c/z.ts', 'c: c/z.ts → ../a/x.ts'])
  assert.equal(findCycle(new Map([['a', new Map([['b', 'x']])]])), undefined)
})
