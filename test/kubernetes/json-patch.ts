/**
 * A small RFC 6902 JSON Patch applier (with RFC 6901 pointers) for the tests: applies the
 * injector's patch to a pod, and the JSON 6902 patches of kustomizations. Strict: a path that
 * does not resolve throws, as an API server would refuse the patch.
 */

export type Operation =
  | { op: 'add' | 'replace' | 'test'; path: string; value: unknown }
  | { op: 'remove'; path: string }
  | { op: 'move' | 'copy'; from: string; path: string }

type Container = Record<string, unknown> | unknown[]

export function parsePointer(pointer: string): string[] {
  if (pointer === '') return []
  if (!pointer.startsWith('/')) throw new Error(`JSON pointer must start with "/": ${pointer}`)
  return pointer
    .slice(1)
    .split('/')
    .map((t) => {
      if (/~[^01]|~$/.test(t)) throw new Error(`bad escape in JSON pointer token ${t}`)
      return t.replaceAll('~1', '/').replaceAll('~0', '~')
    })
}

/** Apply `ops` to a deep copy of `doc` and return it. */
export function applyPatch<T>(doc: T, ops: readonly Operation[]): T {
  let root: unknown = structuredClone(doc)
  for (const [i, op] of ops.entries()) {
    try {
      root = applyOne(root, op)
    } catch (err) {
      throw new Error(`patch operation ${i} (${op.op} ${op.path}): ${(err as Error).message}`, { cause: err })
    }
  }
  return root as T
}

function applyOne(root: unknown, op: Operation): unknown {
  switch (op.op) {
    case 'add':
      return add(root, parsePointer(op.path), structuredClone(op.value))
    case 'remove':
      return remove(root, parsePointer(op.path)).root
    case 'replace': {
      const tokens = parsePointer(op.path)
      get(root, tokens) // must exist
      return add(remove(root, tokens).root, tokens, structuredClone(op.value))
    }
    case 'test':
      if (JSON.stringify(get(root, parsePointer(op.path))) !== JSON.stringify(op.value)) throw new Error('test failed')
      return root
    case 'move': {
      if (op.path.startsWith(op.from + '/')) throw new Error('cannot move a value into itself')
      const r = remove(root, parsePointer(op.from))
      return add(r.root, parsePointer(op.path), r.value)
    }
    case 'copy':
      return add(root, parsePointer(op.path), structuredClone(get(root, parsePointer(op.from))))
    default:
      throw new Error(`unknown op ${(op as { op: string }).op}`)
  }
}

function get(root: unknown, tokens: string[]): unknown {
  let cur = root
  for (const t of tokens) {
    if (Array.isArray(cur)) {
      const i = index(t, cur.length - 1)
      cur = cur[i]
    } else if (isObject(cur)) {
      if (!Object.hasOwn(cur, t)) throw new Error(`no member ${t}`)
      cur = cur[t]
    } else throw new Error(`cannot descend into a ${typeof cur} at ${t}`)
  }
  return cur
}

function add(root: unknown, tokens: string[], value: unknown): unknown {
  if (tokens.length === 0) return value
  const parent = get(root, tokens.slice(0, -1)) as Container
  const last = tokens[tokens.length - 1] as string
  if (Array.isArray(parent)) {
    if (last === '-') parent.push(value)
    else parent.splice(index(last, parent.length), 0, value)
  } else if (isObject(parent)) parent[last] = value
  else throw new Error('parent is not a container')
  return root
}

function remove(root: unknown, tokens: string[]): { root: unknown; value: unknown } {
  if (tokens.length === 0) throw new Error('cannot remove the root')
  const parent = get(root, tokens.slice(0, -1)) as Container
  const last = tokens[tokens.length - 1] as string
  if (Array.isArray(parent)) {
    const [value] = parent.splice(index(last, parent.length - 1), 1)
    return { root, value }
  }
  if (isObject(parent) && Object.hasOwn(parent, last)) {
    const value = parent[last]
    delete parent[last]
    return { root, value }
  }
  throw new Error(`no member ${last}`)
}

function index(token: string, max: number): number {
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new Error(`bad array index ${token}`)
  const i = Number(token)
  if (i > max) throw new Error(`array index ${i} out of range`)
  return i
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
