/**
 * The widget's bundle budget (run after `npm run build`; PC_DIST picks another build). One ES module;
 * onnxruntime stays out of it: its worker, ORT's chunks and .wasm files are separate, found from widget.js's URL.
 */
import { existsSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { gzipSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'

/** gzip budget for dist/widget.js; today ≈189 KiB. Pulling ORT's main-thread JS in (≈115 KiB) breaks it. */
const WIDGET_GZIP_BUDGET = 240 * 1024

const DIST = resolve(process.env.PC_DIST ?? resolve(import.meta.dirname, '../../dist'))
const file = resolve(DIST, 'widget.js')

describe('widget bundle', () => {
  it('is one ES module within its gzip budget', () => {
    expect(existsSync(file), `${file} is missing: run \`npm run build\``).toBe(true)
    const code = readFileSync(file)
    const gz = gzipSync(code, { level: 9 }).byteLength
    console.log(
      `widget.js: ${(code.byteLength / 1024).toFixed(1)} KiB raw, ${(gz / 1024).toFixed(1)} KiB gzip (budget ${WIDGET_GZIP_BUDGET / 1024} KiB)`,
    )
    expect(gz).toBeLessThanOrEqual(WIDGET_GZIP_BUDGET)
    const text = code.toString('utf8')
    expect(text).toMatch(/export\s*\{[^}]*PeerComputeElement/)
    expect(text).not.toMatch(/^\s*import\s/m) // no static imports of other chunks: one module
  })

  it('loads its worker relative to its own URL, and the worker finds its chunks and both .wasm builds next to it', () => {
    expect(existsSync(file), `${file} is missing: run \`npm run build\``).toBe(true)
    const text = readFileSync(file, 'utf8')
    const workers = [
      ...text.matchAll(/new URL\(`(assets\/inference\.worker-[\w-]+\.js)`,\s*import\.meta\.url\)/g),
    ].map((m) => m[1]!)
    expect(workers.length).toBeGreaterThan(0)
    for (const w of new Set(workers)) {
      expect(existsSync(resolve(DIST, w))).toBe(true)
      const worker = readFileSync(resolve(DIST, w), 'utf8')
      const wasm = [...worker.matchAll(/new URL\(`(ort-wasm[\w.-]+\.wasm)`,\s*import\.meta\.url\)/g)].map(
        (m) => m[1]!,
      )
      expect(new Set(wasm).size).toBe(2) // the plain build and the JSEP one (workers/ort-builds.ts)
      for (const f of wasm) expect(existsSync(resolve(DIST, 'assets', f)), f).toBe(true)
      const chunks = [...worker.matchAll(/(?:import\(|from\s*)["'`]\.\/([\w.-]+\.js)["'`]/g)].map(
        (m) => m[1]!,
      )
      expect(chunks.length).toBeGreaterThan(0)
      for (const c of chunks) expect(existsSync(resolve(DIST, 'assets', c)), c).toBe(true)
    }
  })
})
