/**
 * Real models through a real swarm: tab A runs the task pipelines, B and C contribute. OCR of text
 * rendered in the browser, PP-OCR outputs against onnxruntime-node, and voice activity on
 * espeak-ng speech placed at known times in silence.
 */
import { resolve } from 'node:path'
import * as ort from 'onnxruntime-node'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Tensor } from '../../src/shared/tensor.ts'
import { detInput, recInput } from '../../src/tasks/ocr/preprocess.ts'
import type {} from '../../src/ui/tasks-view.ts' // window.__tasks
import { compose, speak, writeWav } from '../helpers/espeak.ts'
import { rectsImage } from '../helpers/images.ts'
import { peerId, type Swarm, startSwarm, waitForContributors } from '../helpers/swarm.ts'

const VENDOR = resolve(import.meta.dirname, '../../public/models/vendor')
const b64 = (t: Tensor) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('base64')
// Generous: other suites may load the two cores; on an idle machine each test takes seconds.
const PART_TIMEOUT = 240_000
const normalize = (s: string) => s.toUpperCase().replace(/\s+/g, '')
const PAGE = [
  'PEER COMPUTE 2026',
  'WEBRTC SWARM',
  'ONNX IN THE BROWSER',
  'SIGNED RECEIPTS',
  'MAP REDUCE OCR',
  'VOICE ACTIVITY 16 KHZ',
]

/** Renders `lines` black on white in tab A and runs OCR there; `policy` overrides the jobs' verification. */
function ocrInPage(
  page: Page,
  lines: string[],
  font: string,
  policy?: { redundancy: number; quorum: number },
) {
  return page.evaluate(
    async ({ lines, font, policy }) => {
      const c = document.createElement('canvas')
      c.width = 900
      c.height = 100 * lines.length + 100
      const g = c.getContext('2d')!
      g.fillStyle = '#fff'
      g.fillRect(0, 0, c.width, c.height)
      g.fillStyle = '#000'
      g.font = font
      g.textBaseline = 'middle'
      for (const [i, l] of lines.entries()) g.fillText(l, 40, 100 + i * 100)
      const img = g.getImageData(0, 0, c.width, c.height)
      const parts: string[] = []
      const t0 = performance.now()
      const res = await window.__tasks!.ocr(img, {
        recBatch: 1,
        onPart: (e) => e.state === 'done' && parts.push(`${e.stage} ${e.index + 1}/${e.total}`),
        ...(policy ? { submit: { policy } } : {}),
      })
      return { text: res.text, lines: res.lines, workers: res.workers, parts, ms: performance.now() - t0 }
    },
    { lines, font, policy },
  )
}

/** Runs `model` on one float32 input from tab A; returns the first output, its worker and run time. */
function submitInPage(page: Page, model: string, x: Tensor) {
  return page.evaluate(
    async ({ model, dims, data }) => {
      const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0))
      const r = await window.__peer.submit(model, {
        x: { dtype: 'float32', dims, data: new Float32Array(bytes.buffer) },
      })
      const out = Object.values(r.outputs)[0]!
      return { dims: out.dims, data: Array.from(out.data as Float32Array), worker: r.worker, runMs: r.runMs }
    },
    { model, dims: x.dims, data: b64(x) },
  )
}

/** Reference run in Node; returns the first output and the median of 5 timed runs (1 thread). */
async function reference(file: string, x: Tensor) {
  const session = await ort.InferenceSession.create(resolve(VENDOR, file), { intraOpNumThreads: 1 })
  try {
    const feeds = { x: new ort.Tensor('float32', x.data as Float32Array, x.dims) }
    const times: number[] = []
    let out: ort.Tensor | undefined
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now()
      out = Object.values(await session.run(feeds))[0]!
      times.push(performance.now() - t0)
    }
    return { data: out!.data as Float32Array, dims: [...out!.dims], ms: times.sort((a, b) => a - b)[2]! }
  } finally {
    await session.release()
  }
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!))
  return m
}

describe('tasks through the swarm', () => {
  let swarm: Swarm
  let ids: string[]
  let tabA: Page

  beforeAll(async () => {
    swarm = await startSwarm({ tabs: 3 })
    ids = await Promise.all(swarm.tabs.map(peerId))
    tabA = swarm.tabs[0]!
    for (const t of swarm.tabs.slice(1)) {
      // Four tabs on two busy cores report critical CPU pressure, which would pause contributors.
      await t.evaluate(() => window.__peer.controls.update({ backOffUnderPressure: false }))
      await t.evaluate(() => window.__peer.setContributing(true))
    }
    await waitForContributors(tabA, ids.slice(1))
    // Cold start: the contributors fetch the four models and create their sessions.
    const warm = await tabA.evaluate(async () => {
      const t0 = performance.now()
      const f32 = (dims: number[]) => ({
        dtype: 'float32' as const,
        dims,
        data: new Float32Array(dims.reduce((a, b) => a * b)),
      })
      const peer = window.__peer
      await Promise.all([
        peer.submit('ppocr-v4-det', { x: f32([1, 3, 32, 32]) }),
        peer.submit('ppocr-v4-rec', { x: f32([1, 3, 48, 32]) }),
        peer.submit('ppocr-v4-rec-ctc', { x: f32([1, 3, 48, 32]) }),
        peer.submit('silero-vad-v5-seq', { frames: f32([1, 576]), h0: f32([2, 1, 128]) }),
      ])
      return performance.now() - t0
    })
    console.log(`cold start: 4 models fetched and run on the contributors in ${warm.toFixed(0)} ms`)
  }, 300_000)
  afterAll(() => swarm?.stop())

  it(
    'PP-OCR detection and recognition outputs from a contributor match onnxruntime-node',
    async () => {
      // Deterministic picture: dark bars like text lines on a seeded-noise background.
      const img = rectsImage(640, 480, [
        { x: 40, y: 60, w: 400, h: 36 },
        { x: 40, y: 140, w: 520, h: 30 },
        { x: 300, y: 300, w: 200, h: 60 },
      ])
      let seed = 42
      for (let i = 0; i < img.data.length; i += 4) {
        seed = (seed * 1103515245 + 12345) % 2 ** 31
        const n = (seed >> 16) % 40
        for (let c = 0; c < 3; c++) img.data[i + c] = Math.abs(img.data[i + c]! - n)
      }
      const det = detInput(img).tensor
      const ref = await reference('ch_PP-OCRv4_det_infer.onnx', det)
      await submitInPage(tabA, 'ppocr-v4-det', det) // warm: the contributors' first runs are slower
      const got = await submitInPage(tabA, 'ppocr-v4-det', det)
      const detDiff = maxAbsDiff(got.data, ref.data)
      expect(got.dims).toEqual(ref.dims)
      expect(detDiff).toBeLessThanOrEqual(1e-4)

      const rec = recInput(img, [{ x: 30, y: 50, w: 420, h: 56 }])
      const refRec = await reference('ch_PP-OCRv4_rec_infer.onnx', rec)
      const gotRec = await submitInPage(tabA, 'ppocr-v4-rec', rec)
      const recDiff = maxAbsDiff(gotRec.data, refRec.data)
      expect(gotRec.dims).toEqual(refRec.dims)
      expect(recDiff).toBeLessThanOrEqual(1e-4)
      console.log(
        `det [${det.dims}]: browser worker ${got.runMs.toFixed(0)} ms, onnxruntime-node ${ref.ms.toFixed(0)} ms, max |diff| ${detDiff.toExponential(2)}; ` +
          `rec [${rec.dims}]: ${gotRec.runMs.toFixed(0)} ms vs ${refRec.ms.toFixed(0)} ms, max |diff| ${recDiff.toExponential(2)}`,
      )
    },
    PART_TIMEOUT,
  )

  it(
    'reads "PEER COMPUTE 2026" rendered in the browser, recognized by contributor tabs',
    async () => {
      const r = await ocrInPage(tabA, ['PEER COMPUTE 2026'], 'bold 72px sans-serif')
      console.log(`OCR: ${JSON.stringify(r.text)} in ${r.ms.toFixed(0)} ms, parts ${r.parts.join(', ')}`)
      expect(normalize(r.text)).toBe('PEERCOMPUTE2026')
      expect(r.lines.every((l) => l.score > 0.8)).toBe(true)
      expect(r.workers.length).toBeGreaterThan(0)
      expect(r.workers.every((w) => ids.slice(1).includes(w))).toBe(true)
    },
    PART_TIMEOUT,
  )

  it(
    "fans a page's lines out over two contributors, and reads the same text on one",
    async () => {
      const single = { redundancy: 1, quorum: 1 }
      const two = await ocrInPage(tabA, PAGE, 'bold 48px sans-serif', single)
      await swarm.tabs[2]!.evaluate(() => window.__peer.setContributing(false))
      await tabA.waitForFunction(
        (id) => !window.__peer.peers().find((p) => p.id === id)?.advert.contributing,
        ids[2],
      )
      const one = await ocrInPage(tabA, PAGE, 'bold 48px sans-serif', single)
      await swarm.tabs[2]!.evaluate(() => window.__peer.setContributing(true))
      await waitForContributors(tabA, ids.slice(1))
      const exact = (r: typeof two) =>
        PAGE.filter((l, i) => normalize(r.lines[i]?.text ?? '') === normalize(l)).length
      console.log(
        `OCR page of ${PAGE.length} lines: ${two.ms.toFixed(0)} ms on 2 contributors (${two.workers.length} used), ` +
          `${one.ms.toFixed(0)} ms on 1; ${exact(two)}/${PAGE.length} lines exact (spacing-normalized): ${JSON.stringify(two.text)}`,
      )
      expect(two.parts.filter((p) => p.startsWith('rec'))).toHaveLength(PAGE.length)
      expect(one.workers).toEqual([ids[1]])
      expect(normalize(one.text)).toBe(normalize(two.text))
      expect(exact(two)).toBeGreaterThanOrEqual(PAGE.length - 1)
    },
    PART_TIMEOUT,
  )

  it(
    'finds the espeak-ng speech placed in silence, and nothing in the long silences',
    async () => {
      const a = speak('Peer compute runs models in the browser.')
      const b = speak('The swarm shares the work.')
      const speech = [
        { at: 3, pcm: a },
        { at: 14, pcm: b },
      ]
      const wav = writeWav(compose(a.rate, 24, speech))
      const spans = speech.map(({ at, pcm }) => [at, at + pcm.samples.length / pcm.rate] as const)
      const r = await tabA.evaluate(async (data) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0))
        const t0 = performance.now()
        const res = await window.__tasks!.vad(bytes.buffer, { chunkSeconds: 8 })
        return {
          segments: res.segments,
          chunks: res.chunks,
          workers: res.workers,
          ms: performance.now() - t0,
        }
      }, Buffer.from(wav).toString('base64'))
      console.log(
        `VAD: ${r.chunks} chunks on ${r.workers.length} worker(s) in ${r.ms.toFixed(0)} ms: ${JSON.stringify(r.segments)}`,
      )
      expect(r.chunks).toBe(3)
      expect(r.workers.every((w) => ids.slice(1).includes(w))).toBe(true)
      for (const [s, e] of spans) expect(r.segments.some((g) => g.start < e && g.end > s)).toBe(true)
      // Every segment lies within a speech clip, give or take 0.5 s: none in the silences around them.
      for (const g of r.segments)
        expect(spans.some(([s, e]) => g.start >= s - 0.5 && g.end <= e + 0.5)).toBe(true)
    },
    PART_TIMEOUT,
  )
})
