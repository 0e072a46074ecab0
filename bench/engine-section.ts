/** Section 5 in its own browser (WebGPU flag on, so SwiftShader is present) over the built site, no relay. */

import type { Page } from 'playwright-core'
import { serveStatic } from '../scripts/serve.ts'
import { launchBrowser } from '../test/helpers/chromium.ts'
import { type EngineModel, engineBench } from './engine.ts'
import { DEEP, findOcrModels } from './models.ts'
import type { Results } from './report.ts'

const mlp = (name: string, dims: number[]): EngineModel => ({
  name,
  file: `models/${name}.onnx`,
  inputs: [{ name: 'x', dims }],
})

export async function engineSection(
  results: Results,
  dist: string,
  quick: boolean,
  log: (s: string) => void,
): Promise<void> {
  const deep: EngineModel = {
    name: DEEP.name,
    file: `bench/models/${DEEP.name}.onnx`,
    inputs: [{ name: 'x', dims: [DEEP.batch, DEEP.width] }],
  }
  const ocr = findOcrModels().map((m) => ({
    name: m.name,
    file: `bench/models/${m.name}.onnx`,
    inputs: m.inputs,
  }))
  // Quick mode keeps the small model (and the WebGPU / fallback-adapter check) and one mid-size model.
  // Fast models get more timed rounds: a run of 1–2 ms moves ±25 % from one to the next here, and
  // over 10 rounds mlp-s's 'auto' read 0.83–1.27 of the best fixed setting, which it had chosen.
  const all: EngineModel[] = quick
    ? [mlp('mlp-s', [64, 256]), mlp('mlp-m', [160, 512])]
    : [
        { ...mlp('mlp-s', [64, 256]), runs: 60 },
        { ...mlp('mlp-m', [160, 512]), runs: 30 },
        mlp('mlp-l', [448, 1024]),
        deep,
        ...ocr,
      ]
  // PC_ENGINE_MODELS=ppocr-det,mlp-l narrows the section to those models (for tuning runs).
  const pick = process.env.PC_ENGINE_MODELS?.split(',')
  const models = pick ? all.filter((m) => pick.includes(m.name)) : all
  const web = await serveStatic({ root: dist })
  const browser = await launchBrowser({ webgpu: true })
  try {
    // A tab (a renderer) per setting: wasm-1, wasm-N and 'auto' (see engine.ts).
    const pages: Page[] = []
    for (let i = 0; i < 3; i++) pages.push(await browser.newPage())
    for (const page of pages) {
      page.on('pageerror', (e) => console.error(`[engine page] ${e.message}`))
      await page.goto(`${web.url}bench/page.html?peer=0`)
      await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 30_000 })
    }
    results.engine = await engineBench(pages, dist, models, {
      runs: quick ? 3 : 10,
      // The plain WASM build's 2-thread PP-OCR detection speeds up from ~150 to ~120 ms around run 28.
      warmRuns: quick ? 0 : 30,
      webgpuModels: ['mlp-s'],
      webgpuRuns: quick ? 2 : 3,
      // Where PP-OCR detection's time goes, op type by op type (mlp-m in quick mode).
      profileModels: quick ? ['mlp-m'] : ['ppocr-det'],
      profileRuns: quick ? 2 : 5,
      // 30 more N-thread runs of PP-OCR detection: past the ~24 after which ORT's pool slows down.
      sustainModels: quick ? [] : ['ppocr-det'],
      log,
    })
    if (!quick && !pick && !models.some((m) => m.name === 'ppocr-det'))
      results.meta.ocr = 'PP-OCR models not found: skipped'
  } finally {
    await browser.close()
    await web.close()
  }
}
