import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { defineConfig, type Plugin } from 'vite'

/** COOP/COEP make the page crossOriginIsolated, which multi-threaded WASM needs. */
export const isolationHeaders = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
}

/**
 * `vite build --mode hooks` (npm run build:test) builds dist-test/: the app with its test hooks
 * (`__peerComputeTestHooks`, src/jobs/adversary.ts). Every other mode leaves them out of the bundle.
 */
export const buildFlags = (mode: string) => ({
  outDir: mode === 'hooks' ? 'dist-test' : 'dist',
  define: { __PC_TEST_HOOKS__: JSON.stringify(mode === 'hooks') },
})

/** `npm run dev`: serve the relay address written by `npm run relay` (.relay/relay.json). */
const relayConfig = (): Plugin => ({
  name: 'peer-compute-relay-config',
  configureServer(server) {
    server.middlewares.use('/peer-compute.json', async (_req, res) => {
      const body = await readFile(resolve(import.meta.dirname, '.relay/relay.json'), 'utf8').catch(
        () => '{"relays":[]}',
      )
      res.setHeader('content-type', 'application/json')
      res.setHeader('cache-control', 'no-store')
      res.end(body)
    })
  },
})

export default defineConfig(({ mode }) => ({
  plugins: [relayConfig()],
  define: buildFlags(mode).define,
  server: { host: '127.0.0.1', headers: isolationHeaders },
  preview: { host: '127.0.0.1', headers: isolationHeaders },
  worker: { format: 'es' },
  optimizeDeps: { exclude: ['onnxruntime-web'] },
  build: {
    target: 'es2023',
    outDir: buildFlags(mode).outDir,
    rollupOptions: {
      input: {
        main: resolve(import.meta.dirname, 'index.html'),
        embed: resolve(import.meta.dirname, 'embed.html'), // the iframe widget (src/widget/embed.ts)
      },
    },
  },
}))
