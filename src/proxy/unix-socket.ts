import { chmodSync, chownSync, lstatSync, mkdtempSync, renameSync, rmdirSync, unlinkSync, type Stats } from 'node:fs'
import type http from 'node:http'
import net from 'node:net'
import path from 'node:path'

export interface SocketPermissions {
  readonly mode: number
  readonly owner: number | undefined
  readonly group: number | undefined
}

/**
 * Listen on a Unix socket at `file` with exactly `perm`. The socket is created in a private
 * (0700) directory next to `file`, given its mode and owner there, and only then renamed into
 * place, so it is never reachable with the umask's looser mode. A socket file left by an
 * earlier run is replaced only when nothing accepts connections on it; any other file at that
 * path is never touched. Returns a function that removes the socket (call it after close).
 */
export async function listenUnix(server: http.Server, file: string, perm: SocketPermissions): Promise<() => void> {
  await removeStale(file)
  const dir = mkdtempSync(path.join(path.dirname(file), '.latchkey-'))
  const temp = path.join(dir, 's')
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ path: temp }, () => {
        server.off('error', reject)
        resolve()
      })
    })
    chmodSync(temp, perm.mode)
    if (perm.owner !== undefined || perm.group !== undefined) {
      try {
        chownSync(temp, perm.owner ?? -1, perm.group ?? -1)
      } catch (err) {
        const e = err as NodeJS.ErrnoException
        const asked = [perm.owner !== undefined ? `socket.owner ${perm.owner}` : '', perm.group !== undefined ? `socket.group ${perm.group}` : ''].filter(Boolean).join(' and ')
        // The temp path means nothing to the user: name the socket and the settings instead.
        throw Object.assign(new Error(`cannot give ${file} ${asked} (${e.code ?? e.message}): another owner needs root or CAP_CHOWN; without them only a group this user is in`), { code: e.code })
      }
    }
    renameSync(temp, file)
  } catch (err) {
    if (server.listening) server.close()
    throw err
  } finally {
    rmdirSafe(dir, temp)
  }
  const ours = lstatSync(file)
  return () => {
    // Only the socket this process created: a later run may already have replaced it.
    const now = statOrUndefined(file)
    if (now !== undefined && now.ino === ours.ino && now.dev === ours.dev) unlinkSync(file)
  }
}

async function removeStale(file: string): Promise<void> {
  const st = statOrUndefined(file)
  if (st === undefined) return
  if (!st.isSocket()) throw Object.assign(new Error(`${file} exists and is not a socket; latchkey does not replace it`), { code: 'EEXIST' })
  const refused = await new Promise<boolean>((resolve, reject) => {
    const c = net.connect(file)
    c.once('connect', () => {
      c.destroy()
      resolve(false)
    })
    c.once('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNREFUSED' ? resolve(true) : reject(err)))
  })
  if (!refused) throw Object.assign(new Error(`another process is listening on ${file}`), { code: 'EADDRINUSE' })
  unlinkSync(file)
}

function statOrUndefined(file: string): Stats | undefined {
  try {
    return lstatSync(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

function rmdirSafe(dir: string, temp: string): void {
  try {
    if (statOrUndefined(temp) !== undefined) unlinkSync(temp)
    rmdirSync(dir)
  } catch {
    // A leftover empty directory is harmless; the listener's state is what matters.
  }
}
