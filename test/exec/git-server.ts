/**
 * A git smart-HTTP server for tests: `git http-backend` (CGI) behind a real HTTPS upstream,
 * answering 401 unless the request carries the expected Authorization header.
 */
import { spawn, spawnSync } from 'node:child_process'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import type { Upstream } from '../helpers/upstream.ts'
import { baseEnv, run } from '../clients/spawn.ts'

/** Why git with http-backend cannot be used here, or undefined when it can. */
export function gitMissing(): string | undefined {
  const r = spawnSync('git', ['--exec-path'], { encoding: 'utf8', env: baseEnv() })
  if (r.error || r.status !== 0) return 'git not found'
  const probe = spawnSync(path.join(r.stdout.trim(), 'git-http-backend'), [], { env: { ...baseEnv(), REQUEST_METHOD: 'GET', PATH_INFO: '/' }, encoding: 'utf8' })
  return probe.error ? 'git http-backend not found' : undefined
}

/** Environment for git commands in tests: no user config, no prompts, fixed identity. */
export function gitEnv(extra: Record<string, string> = {}): Record<string, string> {
  return baseEnv({
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_AUTHOR_NAME: 'latchkey test',
    GIT_AUTHOR_EMAIL: 'test@latchkey.invalid',
    GIT_COMMITTER_NAME: 'latchkey test',
    GIT_COMMITTER_EMAIL: 'test@latchkey.invalid',
    ...extra,
  })
}

/** `root/<name>.git`: a bare repository with one commit holding `README` = `content`. */
export async function makeBareRepo(root: string, name: string, content: string): Promise<void> {
  const work = path.join(root, `${name}-work`)
  await mkdir(work, { recursive: true })
  const git = async (args: string[], cwd: string) => {
    const r = await run('git', args, { env: gitEnv(), cwd })
    if (r.code !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`)
  }
  await git(['init', '-q', '-b', 'main'], work)
  await run('sh', ['-c', `printf '%s' "$1" > README`, 'sh', content], { env: baseEnv(), cwd: work })
  await git(['add', 'README'], work)
  await git(['commit', '-q', '-m', 'first'], work)
  await git(['clone', '-q', '--bare', work, path.join(root, `${name}.git`)], root)
}

/** Serve the repositories under `root` from `up`; requests without `authorization` get 401. */
export function serveGit(up: Upstream, root: string, authorization: string): void {
  const execPath = spawnSync('git', ['--exec-path'], { encoding: 'utf8', env: baseEnv() }).stdout.trim()
  up.handle((req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    if (req.headers.authorization !== authorization) {
      res.writeHead(401, { 'www-authenticate': 'Bearer realm="git"', 'content-type': 'text/plain' })
      res.end('credential required\n')
      return
    }
    const url = new URL(req.url ?? '/', 'https://git.invalid')
    const cgi = spawn(path.join(execPath, 'git-http-backend'), [], {
      env: {
        ...baseEnv(),
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: '1',
        REQUEST_METHOD: req.method ?? 'GET',
        PATH_INFO: decodeURIComponent(url.pathname),
        QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        CONTENT_LENGTH: String(body.length),
        ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: req.headers['content-encoding'] } : {}),
        ...(typeof req.headers['git-protocol'] === 'string' ? { GIT_PROTOCOL: req.headers['git-protocol'] } : {}),
        REMOTE_ADDR: '127.0.0.1',
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    })
    const out: Buffer[] = []
    cgi.stdout.on('data', (c: Buffer) => out.push(c))
    cgi.stdin.on('error', () => undefined)
    cgi.stdin.end(body)
    cgi.once('close', () => {
      // CGI output: header lines, a blank line, the body; `Status:` carries the code.
      const all = Buffer.concat(out)
      let split = all.indexOf('\r\n\r\n')
      let sep = 4
      if (split === -1) {
        split = all.indexOf('\n\n')
        sep = 2
      }
      const headers: Record<string, string> = {}
      let status = 200
      for (const line of all.subarray(0, split).toString('latin1').split(/\r?\n/)) {
        const i = line.indexOf(':')
        if (i <= 0) continue
        const k = line.slice(0, i).trim().toLowerCase()
        const v = line.slice(i + 1).trim()
        if (k === 'status') status = Number.parseInt(v, 10)
        else headers[k] = v
      }
      res.writeHead(status, headers)
      res.end(all.subarray(split + sep))
    })
  })
}
