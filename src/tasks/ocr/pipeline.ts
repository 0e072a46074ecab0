/**
 * OCR over the swarm, map-reduce style: one detection job per image (page), then the text boxes of
 * all pages fan out as recognition jobs of a few boxes each, and the lines are merged in reading order.
 *   const [page] = await ocrImages([img], { submit, dictionary: loadDictionary(keysText) })
 */
import { InvalidTensorError } from '../../shared/errors.ts'
import type { Tensor } from '../../shared/tensor.ts'
import { mapParts, type OnPart, type Submit } from '../fanout.ts'
import { type DbOptions, dbBoxes, readingOrder, type ScoredBox, scaleBoxes } from './db.ts'
import type { Box, RgbaImage } from './image.ts'
import { detInput, recBatches, recInput, recWidth } from './preprocess.ts'
import { decodeLines } from './words.ts'

export const OCR_DET_MODEL = 'ppocr-v4-det'
/** Returns class ids, not [N,T,6625] probabilities: ~1 MB less per 320 px line on the wire. */
export const OCR_REC_MODEL = 'ppocr-v4-rec-ctc'

export interface OcrOptions {
  submit: Submit
  /** Labels from loadDictionary(ppocr_keys_v1.txt). */
  dictionary: string[]
  detModel?: string
  recModel?: string
  /** Longest side of the detector input (default 960). */
  limitSide?: number
  db?: DbOptions
  /** Boxes per recognition job (default 4): smaller spreads wider across the swarm. */
  recBatch?: number
  /** Lines recognized with a lower mean probability are dropped (PaddleOCR drop_score 0.5). */
  dropScore?: number
  concurrency?: number
  onPart?: OnPart
  signal?: AbortSignal
}

export interface OcrLine {
  text: string
  score: number
  /** In original image pixels. */
  box: Box
  detScore: number
}

export interface OcrResult {
  lines: OcrLine[]
  /** Lines in reading order: boxes of one row joined by spaces, rows by newlines. */
  text: string
  timings: { detMs: number; recMs: number; totalMs: number }
  workers: string[]
}

const first = (outputs: Record<string, Tensor>, what: string): Tensor => {
  const t = Object.values(outputs)[0]
  if (t?.dtype !== 'float32') throw new InvalidTensorError(`${what}: no float32 output`)
  return t
}

export async function ocrImages(images: RgbaImage[], o: OcrOptions): Promise<OcrResult[]> {
  const t0 = performance.now()
  const workers = images.map(() => new Set<string>())
  const common = { concurrency: o.concurrency ?? 4, ...(o.onPart ? { onPart: o.onPart } : {}) }

  const pageBoxes = await mapParts(
    images,
    async (img, page, signal) => {
      const det = detInput(img, o.limitSide)
      const r = await o.submit(o.detModel ?? OCR_DET_MODEL, { x: det.tensor }, { signal })
      const map = first(r.outputs, 'detector')
      const [h, w] = map.dims.slice(-2) as [number, number]
      if (map.data.length !== h * w) throw new InvalidTensorError(`detector map has dims [${map.dims}]`)
      if (r.worker) workers[page]!.add(r.worker)
      const boxes = dbBoxes(map.data as Float32Array, w, h, o.db)
      return { boxes: scaleBoxes(boxes, det.scaleX, det.scaleY, img.width, img.height), worker: r.worker }
    },
    { ...common, stage: 'det', ...(o.signal ? { signal: o.signal } : {}) },
  )
  const detMs = performance.now() - t0

  // Reduce the pages' boxes into one list of recognition jobs.
  const jobs = pageBoxes.flatMap(({ boxes }, page) =>
    recBatches(boxes, o.recBatch ?? 4).map((idx) => ({ page, boxes: idx.map((i) => boxes[i]!) })),
  )
  const dict = o.dictionary
  const recognized = await mapParts(
    jobs,
    async ({ page, boxes }, _i, signal) => {
      const x = recInput(images[page]!, boxes)
      const r = await o.submit(o.recModel ?? OCR_REC_MODEL, { x }, { signal })
      if (r.worker) workers[page]!.add(r.worker)
      const decoded = decodeLines(r.outputs, x, boxes.map(recWidth), dict)
      if (decoded.length !== boxes.length)
        throw new InvalidTensorError('recognizer returned the wrong batch size')
      return { lines: decoded.map((d, k) => lineOf(d, boxes[k]!)), worker: r.worker }
    },
    { ...common, stage: 'rec', ...(o.signal ? { signal: o.signal } : {}) },
  )
  const recMs = performance.now() - t0 - detMs

  return images.map((_, page) => {
    const lines = recognized
      .filter((_, j) => jobs[j]!.page === page)
      .flatMap((r) => r.lines)
      .filter((l) => l.text.trim() !== '' && l.score >= (o.dropScore ?? 0.5))
    const rows = readingOrder(lines.map((l) => ({ ...l.box, line: l })))
    return {
      lines: rows.flat().map((b) => b.line),
      text: rows.map((r) => r.map((b) => b.line.text.trim()).join(' ')).join('\n'),
      timings: { detMs, recMs, totalMs: performance.now() - t0 },
      workers: [...workers[page]!],
    }
  })
}

const lineOf = (d: { text: string; score: number }, b: ScoredBox): OcrLine => ({
  text: d.text,
  score: d.score,
  box: { x: b.x, y: b.y, w: b.w, h: b.h },
  detScore: b.score,
})

export async function ocr(image: RgbaImage, o: OcrOptions): Promise<OcrResult> {
  const [result] = await ocrImages([image], o)
  return result!
}
