/** A static server for `dist/` (sirv) with the COOP/COEP headers and the relay config the page reads. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { extname, resolve } from 'node:path'
import sirv from 'sirv'
import { configDocument } from '../node/relay/config-http.ts'
import type { IceConfig } from '../node/relay/turn.ts'
import { isolationHeaders } from '../vite.config.ts'

/** Types that sirv's table (mrmime) lacks, or gives without a charset. */
const TYPES: Record<string, string> = {
  '.onnx': 'application/octet-stream',
  '.txt': 'text/plain; charset=utf-8',
}
/** Vite's content-hashed output, `assets/<name>-<8-char hash>.<ext>`: its bytes never change under a URL. */
const HASHED = /^\/assets\/[^/]+-[\w-]{8}\.\w+$/
const IMMUTABLE = 'public, max-age=31536000, immutable'

/** Dot segments (`..`, dotfiles) in any encoding or separator; sirv also keeps lookups inside root. */
const hidden = (path: string) => {
  try {
    return /(^|\/)\./.test(decodeURIComponent(path).replaceAll('\\', '/'))
  } catch {
    return true // malformed %-escape
  }
}

const notFound = (res: ServerResponse) => {
  res.removeHeader('cache-control')
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not found')
}

export interface StaticServer {
  url: string
  server: Server
  close(): Promise<void>
}

/**
 * `relayFile` holds `{ relays: [...] }`; it is re-read per request so a restarted relay is picked up.
 * `ice` adds `iceServers` to that config: static entries, and TURN credentials minted per request
 * for the PeerId the page names (`?peer=`), with `iceServersExpireAt`.
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
  ice?: IceConfig
  /** Serve HTTPS with this certificate (a LAN page needs a secure context). */
  tls?: { cert: string; key: string }
}) {
  // dev: look files up per request (with sirv's own containment check), so a rebuilt dist/ is served as is.
  const config = configDocument(opts.relayFile, opts.ice)
  const files = sirv(resolve(opts.root), {
    dev: true,
    etag: true,
    extensions: ['html'],
    setHeaders: (res, path) => {
      const type = TYPES[extname(path)]
      if (type) res.setHeader('content-type', type)
    },
    onNoMatch: (_req, res) => notFound(res),
  })
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (opts.isolated !== false) for (const [k, v] of Object.entries(isolationHeaders)) res.setHeader(k, v)
    if (opts.cors !== false) {
      res.setHeader('Access-Control-Allow-Origin', '*')
      res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin')
    }
    const path = (req.url ?? '/').split('?', 1)[0]!
    if (path === '/peer-compute.json') {
      const body = await config(new URL(req.url ?? '/', 'http://x').searchParams.get('peer'))
      if (body == null) return notFound(res)
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(body)
      return
    }
    if (hidden(path)) return notFound(res)
    // Set before sirv so a 304 carries it too; unhashed files (index.html, widget.js, models) revalidate.
    res.setHeader('cache-control', HASHED.test(path) ? IMMUTABLE : 'no-cache')
    files(req, res)
  }
  const server: Server = opts.tls
    ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, handle)
    : createServer(handle)
  await new Promise<void>((ok) => server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', ok))
  const { port } = server.address() as AddressInfo
  return {
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}/`,
    server,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  } satisfies StaticServer
}
