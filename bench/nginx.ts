/**
 * nginx for the bench, when it is installed (Debian: `apt-get install nginx`): one process
 * (`master_process off`, so the one worker is the process whose CPU is read), no access log,
 * everything under a temp dir. Two roles: the upstream (`return 200` with the same body as
 * bench/upstream.ts) and the reference proxy (`proxy_pass` to the upstream with keep-alive,
 * adding the same header as latchkey and the minimal proxy).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import { freePort } from './load.ts'

export interface Nginx {
  pid: number
  port: number
  stop: () => Promise<void>
}

/** The nginx binary, or undefined when it is not installed (`BENCH_NGINX=0` skips it too). */
export function findNginx(): string | undefined {
  if (process.env.BENCH_NGINX === '0') return undefined
  for (const p of [process.env.BENCH_NGINX, '/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/bin/nginx']) {
    if (p && spawnSync(p, ['-v']).status === 0) return p
  }
  return undefined
}

export async function startNginx(bin: string, dir: string, role: { upstream: true; body: string } | { proxyTo: string; authorization: string }): Promise<Nginx> {
  const port = await freePort()
  const location =
    'upstream' in role
      ? `location / { default_type application/json; return 200 '${role.body}'; }`
      : `location /up/ { proxy_pass http://up/; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Authorization "${role.authorization}"; }`
  const upstreamBlock = 'proxyTo' in role ? `upstream up { server ${role.proxyTo}; keepalive 64; }` : ''
  const conf = path.join(dir, `nginx-${port}.conf`)
  await writeFile(
    conf,
    `daemon off; master_process off; worker_processes 1; pid ${dir}/nginx-${port}.pid; error_log ${dir}/nginx-${port}.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  keepalive_requests 100000000; keepalive_timeout 60s;
  ${upstreamBlock}
  server { listen 127.0.0.1:${port}; ${location} }
}
`,
  )
  const child: ChildProcess = spawn(bin, ['-p', dir, '-e', path.join(dir, `nginx-${port}.log`), '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  const deadline = Date.now() + 10_000
  while (!(await canConnect(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`nginx did not start: ${stderr.slice(0, 300)}`)
    }
    await new Promise((r) => setTimeout(r, 20))
  }
  return {
    pid: child.pid!,
    port,
    stop: async () => {
      child.kill('SIGQUIT')
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(t)
    },
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}
