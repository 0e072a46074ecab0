/**
 * `--http`: the relay serves the page's `peer-compute.json` itself, so a static site needs no
 * other server for it (its proxy routes that one path here). Each request gets the addr-file as it
 * is now (other relays' entries included) plus ICE servers, TURN credentials minted for the asking
 * `?peer=`: the TURN secret stays in this process.
 */
import { readFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { configFor, type IceConfig } from './turn.ts'

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
  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://relay')
    res.setHeader('Access-Control-Allow-Origin', '*')
    res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin')
    if (url.pathname !== '/peer-compute.json') return void res.writeHead(404).end('not found')
    if (req.method !== 'GET' && req.method !== 'HEAD') return void res.writeHead(405).end()
    let base: Record<string, unknown> = {}
    try {
      base = JSON.parse(await readFile(opts.addrFile, 'utf8'))
    } catch {} // not written yet: no relays
    const body = JSON.stringify(configFor(base, opts.ice, url.searchParams.get('peer')))
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
