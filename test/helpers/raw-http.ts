import net from 'node:net'

/** Send raw bytes to host:port and collect everything until the server closes or `timeoutMs` passes. */
export function rawRequest(url: string, payload: string | Buffer, timeoutMs = 3000): Promise<string> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const socket = net.connect(Number(u.port), u.hostname, () => socket.write(payload))
    const timer = setTimeout(() => {
      socket.destroy()
      resolve(Buffer.concat(chunks).toString('latin1'))
    }, timeoutMs)
    socket.on('data', (c) => chunks.push(c))
    socket.on('error', (err) => {
      clearTimeout(timer)
      if (chunks.length > 0) resolve(Buffer.concat(chunks).toString('latin1'))
      else reject(err)
    })
    socket.on('close', () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks).toString('latin1'))
    })
  })
}

/** Status code of the first response in a raw HTTP answer. */
export function statusOf(raw: string): number {
  return Number(/^HTTP\/1\.[01] (\d{3})/.exec(raw)?.[1] ?? 0)
}
