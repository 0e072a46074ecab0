/**
 * The embeddable widget: ONE ES module, `dist/widget.js`, defining `<peer-compute>`, and then the
 * package's browser entry (src/index.ts, `peer-compute`) the same way, as `dist/peer-compute.js`.
 * Run after the app build (they add to the same outDir). Not Vite's library mode, which inlines every
 * asset: that would put onnxruntime's .wasm files (14 and 28 MB) into the worker as base64. Here the
 * worker and the .wasm are emitted under assets/ and found at run time relative to the module's own
 * URL (src/compute/spawn-worker.ts). Two builds, as one input each keeps each module whole; hashed
 * asset names let both share assets/.
 */
import { resolve } from 'node:path'
import { build, defineConfig, type InlineConfig } from 'vite'
import { buildFlags } from './vite.config.ts'

/** One whole ES module `dist/<name>.js` from `entry`. */
const moduleBuild = (name: string, entry: string, mode: string) =>
  ({
    base: './',
    publicDir: false,
    define: buildFlags(mode).define,
    worker: { format: 'es' },
    build: {
      target: 'es2023',
      outDir: buildFlags(mode).outDir,
      emptyOutDir: false,
      copyPublicDir: false,
      chunkSizeWarningLimit: 800,
      rolldownOptions: {
        input: { [name]: resolve(import.meta.dirname, entry) },
        preserveEntrySignatures: 'strict',
        output: { entryFileNames: '[name].js', codeSplitting: false },
      },
    },
  }) satisfies InlineConfig

export default defineConfig(({ mode }) => {
  let outDir = buildFlags(mode).outDir // the widget's, --outDir included
  return {
    ...moduleBuild('widget', 'src/widget/index.ts', mode),
    plugins: [
      {
        name: 'peer-compute:browser-entry',
        apply: 'build',
        configResolved(config) {
          outDir = config.build.outDir
        },
        // dist-test (--mode hooks) serves the tests' app and widget only.
        async closeBundle() {
          if (mode === 'hooks') return
          const entry = moduleBuild('peer-compute', 'src/index.ts', mode)
          await build({ ...entry, build: { ...entry.build, outDir }, configFile: false, mode })
        },
      },
    ],
  }
})
