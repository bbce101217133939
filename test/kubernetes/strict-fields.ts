/**
 * Unknown-field check. The validators in kubernetes-models accept properties the schema does
 * not define (the OpenAPI document sets no `additionalProperties: false`), so a typo such as
 * `readOnlyRootFileSystem` would pass them, and the API server would silently drop it. The
 * package's TypeScript interfaces are generated from the same OpenAPI document, so each
 * object is type-checked as an object literal of its interface: TypeScript's excess-property
 * check reports every unknown field, at any depth, and every type mismatch. Each model module
 * (see `modelModule`) exports `I<Kind>`.
 */
import path from 'node:path'
import ts from 'typescript'
import { modelModule } from './schema.ts'

const HERE = path.dirname(new URL(import.meta.url).pathname)

interface Typed {
  apiVersion: string
  kind: string
}

/** One message per problem, naming the object; empty when every object type-checks. */
export function unknownFieldProblems(objects: readonly Typed[]): string[] {
  const file = path.join(HERE, '__strict_fields__.ts')
  const lines: string[] = []
  const names: string[] = []
  objects.forEach((o, i) => {
    lines.push(`import type { I${o.kind} as T${i} } from ${JSON.stringify(modelModule(o.apiVersion, o.kind))}`)
    names.push(`${o.kind}/${(o as { metadata?: { name?: string } }).metadata?.name ?? '?'}`)
  })
  objects.forEach((o, i) => lines.push(`export const o${i}: T${i} = ${JSON.stringify(o)}`))
  const source = lines.join('\n') + '\n'
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    skipLibCheck: true,
    types: [],
  }
  const host = ts.createCompilerHost(options)
  const getSourceFile = host.getSourceFile.bind(host)
  host.getSourceFile = (name, lang, ...rest) => (path.resolve(name) === file ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest))
  const fileExists = host.fileExists.bind(host)
  host.fileExists = (name) => path.resolve(name) === file || fileExists(name)
  const readFile = host.readFile.bind(host)
  host.readFile = (name) => (path.resolve(name) === file ? source : readFile(name))
  const program = ts.createProgram([file], options, host)
  const sf = program.getSourceFile(file)
  return ts.getPreEmitDiagnostics(program, sf).map((d) => {
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1
    const at = line >= objects.length ? names[line - objects.length] : 'import'
    return `${at}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`
  })
}
