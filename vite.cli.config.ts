/**
 * The `peer-compute` CLI: `vite build -c vite.cli.config.ts` bundles node/cli.ts and the app code it
 * shares into dist-node/cli.mjs, which plain `node` runs. Packages stay external, so `npm ci
 * --omit=dev` supplies them; nothing at run time needs a dev dependency.
 */
import { resolve } from 'node:path'
import { defineConfig } from 'vite'

export default defineConfig({
  publicDir: false,
  logLevel: 'warn',
  define: { __PC_TEST_HOOKS__: 'false' },
  build: {
    ssr: resolve(import.meta.dirname, 'node/cli.ts'),
    outDir: 'dist-node',
    emptyOutDir: true,
    target: 'node20',
    minify: false,
    rolldownOptions: { output: { entryFileNames: 'cli.mjs', codeSplitting: false } },
  },
})
