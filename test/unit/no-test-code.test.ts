/**
 * No test code in production: the adversary modes (src/jobs/adversary.ts), the code that honours
 * `createPeer({ testHooks })` and the app's `__peerComputeTestHooks` reader are left out of dist/ (app,
 * workers, widget) by `__PC_TEST_HOOKS__`, and kept in the test build dist-test/, which proves the
 * markers would be seen. Run after `npm run build`.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ADVERSARY_MODES } from '../../src/jobs/adversary.ts'

const ROOT = resolve(import.meta.dirname, '../..')
const DIST = resolve(process.env.PC_DIST ?? resolve(ROOT, 'dist'))
const DIST_TEST = resolve(process.env.PC_DIST_TEST ?? resolve(ROOT, 'dist-test'))

/** Mode names distinct enough not to occur by chance ('replay' is also an onnxruntime method). */
const MARKERS = [
  ...ADVERSARY_MODES.filter((m) => m.includes('-')),
  '__peerComputeTestHooks',
  'testHooks',
  'corruptChunk',
  'otherModel',
  'slowMs',
]

/** The app (pages, chunks and workers) and the widget, each as one text. */
function bundles(dist: string): Record<'app' | 'widget', string> {
  const assets = resolve(dist, 'assets')
  const need = [resolve(dist, 'index.html'), resolve(dist, 'widget.js'), assets]
  for (const f of need) expect(existsSync(f), `${f} is missing: run \`npm run build\``).toBe(true)
  const js = readdirSync(assets).filter((f) => f.endsWith('.js'))
  expect(js.some((f) => f.startsWith('inference.worker-'))).toBe(true)
  expect(js.some((f) => f.startsWith('main-'))).toBe(true)
  const read = (f: string) => readFileSync(f, 'utf8')
  return {
    app: [resolve(dist, 'index.html'), resolve(dist, 'embed.html'), ...js.map((f) => resolve(assets, f))]
      .filter(existsSync)
      .map(read)
      .join('\n'),
    widget: read(resolve(dist, 'widget.js')),
  }
}

const found = (text: string) => MARKERS.filter((m) => text.includes(m))

describe('test hooks in the bundles', () => {
  it('leaves every adversary mode and hook reader out of dist/ (app, workers, widget, library, CLI)', () => {
    const prod = bundles(DIST)
    expect(found(prod.app)).toEqual([])
    expect(found(prod.widget)).toEqual([])
    const library = resolve(DIST, 'peer-compute.js')
    const cli = resolve(ROOT, 'dist-node/cli.mjs')
    for (const f of [library, cli]) {
      expect(existsSync(f), `${f} is missing: run \`npm run build\``).toBe(true)
      expect(found(readFileSync(f, 'utf8')), f).toEqual([])
    }
  })

  it('keeps them in the test build dist-test/, so the check above can fail', () => {
    const test = bundles(DIST_TEST)
    expect(found(test.app)).toEqual(MARKERS)
    // Only the app's page entry (src/ui/main.ts) reads hooks from a global; the widget takes none.
    expect(found(test.widget)).toEqual(MARKERS.filter((m) => m !== '__peerComputeTestHooks'))
  })
})
