/**
 * The embeddable widget: ONE ES module, `dist/widget.js`, defining `<peer-compute>`. Run after the
 * app build (it adds to the same outDir). Not Vite's library mode, which inlines every asset: that
 * would put onnxruntime's .wasm files (14 and 28 MB) into the worker as base64. Here the worker and the .wasm are
 * emitted under assets/ and found at run time relative to widget.js's own URL (src/compute/spawn-worker.ts).
 */
import { resolve } from 'node:path'
import { defineConfig } from 'vite'
import { buildFlags } from './vite.config.ts'

export default defineConfig(({ mode }) => ({
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
      input: { widget: resolve(import.meta.dirname, 'src/widget/index.ts') },
      preserveEntrySignatures: 'strict',
      output: { entryFileNames: '[name].js', codeSplitting: false },
    },
  },
}))
