/** Builds the site plus the bench page into one folder, then writes the bench models and catalog. */
import { resolve } from 'node:path'
import { build } from 'vite'
import { writeBenchAssets } from './models.ts'

const ROOT = resolve(import.meta.dirname, '..')

export async function buildBench(outDir: string): Promise<void> {
  await build({
    root: ROOT,
    configFile: resolve(ROOT, 'vite.config.ts'),
    logLevel: 'warn',
    build: {
      outDir,
      emptyOutDir: true,
      chunkSizeWarningLimit: 4096,
      // Merged with the config's inputs: the app's index.html plus the bench page.
      rollupOptions: { input: { bench: resolve(ROOT, 'bench/page.html') } },
    },
  })
  await writeBenchAssets(outDir)
}
