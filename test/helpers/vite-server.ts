/** Starts the project's Vite dev server on a free loopback port for browser tests. */
import { resolve } from 'node:path'
import { createServer } from 'vite'

export interface DevServer {
  url: string
  close(): Promise<void>
}

export async function startViteServer(): Promise<DevServer> {
  const root = resolve(import.meta.dirname, '../..')
  const server = await createServer({
    root,
    configFile: resolve(root, 'vite.config.ts'),
    logLevel: 'warn',
    clearScreen: false,
    server: { port: 0, host: '127.0.0.1', strictPort: false, watch: null, hmr: false },
  })
  await server.listen()
  const address = server.httpServer?.address()
  if (!address || typeof address === 'string') {
    await server.close()
    throw new Error('vite dev server has no TCP address')
  }
  return { url: `http://127.0.0.1:${address.port}`, close: () => server.close() }
}
