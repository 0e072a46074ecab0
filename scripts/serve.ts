/** A static server for `dist/` with the COOP/COEP headers and the relay config the page reads. */
import { createReadStream } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { extname, join, normalize, resolve } from 'node:path'
import { isolationHeaders } from '../vite.config.ts'

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.css': 'text/css',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.txt': 'text/plain; charset=utf-8',
}

export interface StaticServer {
  url: string
  server: Server
  close(): Promise<void>
}

/**
 * `relayFile` holds `{ relays: [...] }`; it is re-read per request so a restarted relay is picked up.
 * `isolated: false` drops COOP/COEP (a plain third-party host page); `cors` (default on) lets other
 * sites load the widget, its worker, the .wasm, models and relay config.
 */
export async function serveStatic(opts: {
  root: string
  port?: number
  host?: string
  relayFile?: string
  isolated?: boolean
  cors?: boolean
}) {
  const root = resolve(opts.root)
  const server = createServer(async (req, res) => {
    if (opts.isolated !== false) for (const [k, v] of Object.entries(isolationHeaders)) res.setHeader(k, v)
    if (opts.cors !== false) {
      res.setHeader('Access-Control-Allow-Origin', '*')
      res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin')
    }
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)
    try {
      if (path === '/peer-compute.json') {
        const body = opts.relayFile ? await readFile(opts.relayFile) : '{"relays":[]}'
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(body)
        return
      }
      let file = normalize(join(root, path))
      if (!file.startsWith(root)) throw Object.assign(new Error('outside root'), { code: 'ENOENT' })
      if ((await stat(file)).isDirectory()) file = join(file, 'index.html')
      const size = (await stat(file)).size
      res.writeHead(200, {
        'content-type': MIME[extname(file)] ?? 'application/octet-stream',
        'content-length': size,
      })
      createReadStream(file).pipe(res)
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found')
    }
  })
  await new Promise<void>((ok) => server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', ok))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/`,
    server,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  } satisfies StaticServer
}
