/**
 * `--http`: the relay serves the page's `peer-compute.json` itself, so a static site needs no
 * other server for it (its proxy routes that one path here). Each request gets the addr-file as it
 * is now (other relays' entries included) plus ICE servers, TURN credentials minted for the asking
 * `?peer=`: the TURN secret stays in this process.
 */
import { readFile, stat } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { configFor, type IceConfig } from './turn.ts'

/**
 * The `peer-compute.json` a request gets: the addr-file (re-read only when it changed, as tabs ask
 * again to renew their TURN credentials) plus ICE servers minted for `peer`. Undefined while the
 * file cannot be read.
 */
export function configDocument(addrFile: string | undefined, ice: IceConfig | undefined) {
  let cached: { mtimeMs: number; base: Record<string, unknown> } | undefined
  const base = async (): Promise<Record<string, unknown> | undefined> => {
    if (addrFile == null) return {}
    try {
      const { mtimeMs } = await stat(addrFile)
      if (cached?.mtimeMs !== mtimeMs)
        cached = { mtimeMs, base: JSON.parse(await readFile(addrFile, 'utf8')) }
      return cached.base
    } catch {
      return undefined
    }
  }
  return async (peer: string | null): Promise<string | undefined> => {
    const b = await base()
    return b && JSON.stringify(configFor(b, ice, peer))
  }
}

export interface ConfigServer {
  url: string
  close(): Promise<void>
}

export async function serveConfig(opts: {
  host: string
  port: number
  addrFile: string
  ice?: IceConfig
}): Promise<ConfigServer> {
  const document = configDocument(opts.addrFile, opts.ice)
  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://relay')
    res.setHeader('Access-Control-Allow-Origin', '*')
    res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin')
    if (url.pathname !== '/peer-compute.json') return void res.writeHead(404).end('not found')
    if (req.method !== 'GET' && req.method !== 'HEAD') return void res.writeHead(405).end()
    const peer = url.searchParams.get('peer')
    // Not written yet: no relays, ICE servers all the same.
    const body = (await document(peer)) ?? JSON.stringify(configFor({}, opts.ice, peer))
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(body)
  })
  await new Promise<void>((ok, fail) => {
    server.once('error', fail)
    server.listen(opts.port, opts.host, ok)
  })
  const { port } = server.address() as AddressInfo
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host
  return {
    url: `http://${host}:${port}/peer-compute.json`,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections()
        server.close(() => ok())
      }),
  }
}
