/**
 * The relay for production: `vite build -c vite.relay.config.ts` bundles node/relay/main.ts (and the
 * shared code it imports) into ONE file, `dist-relay/relay.mjs`, that plain `node` runs. Packages
 * stay external, so an install with `npm ci --omit=dev` supplies them: nothing at run time needs a
 * dev dependency (tsx, vite). test/unit/relay-install.test.ts proves it.
 */
import { resolve } from 'node:path'
import { defineConfig } from 'vite'

export default defineConfig({
  publicDir: false,
  logLevel: 'warn',
  build: {
    ssr: resolve(import.meta.dirname, 'node/relay/main.ts'),
    outDir: 'dist-relay',
    emptyOutDir: true,
    target: 'node20',
    minify: false,
    rolldownOptions: { output: { entryFileNames: 'relay.mjs', codeSplitting: false } },
  },
})
