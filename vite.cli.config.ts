/**
 * The `peer-compute` CLI: `vite build -c vite.cli.config.ts` bundles node/cli.ts and the app code it
 * shares into dist-node/cli.mjs, which plain `node` runs, then the engine's ORT worker
 * (node/ort.worker.ts) into dist-node/ort.worker.mjs beside it (node/engine-pool.ts loads it from
 * there), and the package's Node entry (node/index.ts, `peer-compute/node`) into dist-node/index.mjs.
 * Three builds, as one input each keeps each file whole. Packages stay external, so `npm ci
 * --omit=dev` supplies them; nothing at run time needs a dev dependency. Except @libp2p/webrtc:
 * bundled from our patched copy (patches/), since a package's consumers install it unpatched.
 */
import { resolve } from 'node:path'
import { build, defineConfig, type InlineConfig } from 'vite'

/** One SSR build of `entry` into dist-node/`file`. */
const bundle = (entry: string, file: string, emptyOutDir: boolean) =>
  ({
    root: import.meta.dirname,
    publicDir: false,
    logLevel: 'warn',
    define: { __PC_TEST_HOOKS__: 'false' },
    ssr: { noExternal: ['@libp2p/webrtc'] },
    build: {
      ssr: resolve(import.meta.dirname, entry),
      outDir: 'dist-node',
      emptyOutDir,
      target: 'node20',
      minify: false,
      rolldownOptions: { output: { entryFileNames: file, codeSplitting: false } },
    },
  }) satisfies InlineConfig

export default defineConfig({
  ...bundle('node/cli.ts', 'cli.mjs', true),
  plugins: [
    {
      name: 'peer-compute:ort-worker-and-entry',
      apply: 'build',
      async closeBundle() {
        await build({ ...bundle('node/ort.worker.ts', 'ort.worker.mjs', false), configFile: false })
        await build({ ...bundle('node/index.ts', 'index.mjs', false), configFile: false })
      },
    },
  ],
})
