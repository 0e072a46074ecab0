/** Word gaps in OCR lines: CTC paths over synthetic crops whose "characters" are black bars. */
import { describe, expect, it } from 'vitest'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { loadDictionary, pathText } from '../../src/tasks/ocr/ctc.ts'
import type { Box } from '../../src/tasks/ocr/image.ts'
import { recInput, recWidth } from '../../src/tasks/ocr/preprocess.ts'
import { decodeLines } from '../../src/tasks/ocr/words.ts'
import { rectsImage } from '../helpers/images.ts'

const dict = loadDictionary('a\nb\nc\n1\n。\n') // ['', 'a', 'b', 'c', '1', '。', ' ']
const SPACE = dict.length - 1
const H = 48
/** Bars 12 px wide and 30 tall (rows 9-38): recognition input pixels equal image pixels at height 48. */
const GLYPH = { w: 12, y: 9, h: 30 }

/**
 * A line of `chars` with `gaps[i]` ink-free pixels before character i + 1, and the recognizer's
 * output for it: each character at the step over its centre, a space label in the gaps listed in
 * `modelSpaces` (indices of the character after the gap).
 */
function line(chars: string, gaps: number[], modelSpaces: number[] = [], o: { invert?: boolean } = {}) {
  const rects: Box[] = []
  let x = 20
  for (let i = 0; i < chars.length; i++) {
    if (i > 0) x += gaps[i - 1]!
    rects.push({ x, y: GLYPH.y, w: GLYPH.w, h: GLYPH.h })
    x += GLYPH.w
  }
  const img = rectsImage(x + 20, H, rects)
  if (o.invert) for (let i = 0; i < img.data.length; i += 4) img.data.fill(255 - img.data[i]!, i, i + 3)
  const box = { x: 0, y: 0, w: img.width, h: H }
  const input = recInput(img, [box])
  const steps = input.dims[3]! / 8
  const ids = new BigInt64Array(steps)
  const step = (px: number) => Math.floor(px / 8)
  for (const [i, r] of rects.entries()) {
    ids[step(r.x + r.w / 2)] = BigInt(dict.indexOf(chars[i]!))
    if (modelSpaces.includes(i)) ids[step(r.x - gaps[i - 1]! / 2)] = BigInt(SPACE)
  }
  const outputs: NamedTensors = {
    ids: { dtype: 'int64', dims: [1, steps], data: ids },
    probs: { dtype: 'float32', dims: [1, steps], data: new Float32Array(steps).fill(0.9) },
  }
  return { outputs, input, width: recWidth(box) }
}

const args = (l: ReturnType<typeof line>) => [l.outputs, l.input, [l.width], dict] as const
const read = (l: ReturnType<typeof line>) => decodeLines(...args(l))[0]!

describe('OCR word gaps', () => {
  it('adds the space the recognizer missed where the gap is much wider than in-word gaps', () => {
    // "abca bc": letter gaps 3-5 px, one word gap of 16 px (about half the 30 px ink height).
    const [d] = decodeLines(...args(line('abcabc', [3, 4, 5, 16, 3])))
    expect(d!.text).toBe('abca bc')
    expect(d!.score).toBeCloseTo(0.9, 5) // the added space is not a label: the score is unchanged
  })

  it('reads the [N, T, C] probabilities (ppocr-v4-rec) the same as ids and probs', () => {
    const l = line('abcabc', [3, 4, 5, 16, 3])
    const ids = l.outputs.ids!.data as BigInt64Array
    const probs = new Float32Array(ids.length * dict.length)
    ids.forEach((c, t) => {
      probs[t * dict.length + Number(c)] = 0.9
    })
    const full = { p: { dtype: 'float32' as const, dims: [1, ids.length, dict.length], data: probs } }
    expect(decodeLines(full, l.input, [l.width], dict)).toEqual(decodeLines(...args(l)))
  })

  it("keeps the recognizer's spaces, once, and adds none inside words", () => {
    expect(read(line('abcabc', [3, 4, 5, 24, 3], [4])).text).toBe('abca bc')
    expect(read(line('abcabc', [3, 4, 5, 4, 3])).text).toBe('abcabc')
    // Gaps of 6-7 px stay in-word: the typical gap (5) + 0.18 × 30 px is about 10.
    expect(read(line('abcabcab', [5, 6, 5, 7, 5, 4, 5])).text).toBe('abcabcab')
  })

  it('scales to the gaps the recognizer spaced: wide letter gaps (monospace) stay in-word', () => {
    // A 12 px gap is a word gap by the in-word gaps alone (typical 3 px + 5.4)…
    expect(read(line('abcabcab', [3, 3, 12, 30, 3, 3, 30])).text).toBe('abc a bca b')
    // …but not beside gaps of 30 px where the recognizer put spaces (0.6 × 30 = 18).
    expect(read(line('abcabcab', [3, 3, 12, 30, 3, 3, 30], [4, 7])).text).toBe('abca bca b')
  })

  it('needs a wider gap beside a tabular "1"', () => {
    expect(read(line('abcabc', [3, 3, 11, 3, 3])).text).toBe('abc abc')
    expect(read(line('ab11ab', [3, 3, 11, 3, 3])).text).toBe('ab11ab')
  })

  it('adds no spaces in CJK text', () => {
    expect(read(line('ab。abc', [3, 3, 16, 3, 3])).text).toBe('ab。abc')
  })

  it('reads light text on a dark background alike', () => {
    expect(read(line('abcabc', [3, 4, 5, 16, 3], [], { invert: true })).text).toBe('abca bc')
  })

  it('leaves a crop without contrast to the recognizer', () => {
    const l = line('abc', [16, 16])
    ;(l.input.data as Float32Array).fill(0.5)
    expect(read(l).text).toBe('abc')
  })

  it('merges runs of spaces and trims the ends', () => {
    const label = (label: number, t: number) => ({ label, prob: 1, first: t, last: t })
    const path = {
      steps: 9,
      labels: [label(SPACE, 0), label(1, 2), label(SPACE, 3), label(SPACE, 5), label(2, 6), label(SPACE, 8)],
    }
    expect(pathText(path, dict).text).toBe('a b')
    expect(pathText(path, dict, new Set([4])).text).toBe('a b')
    expect(pathText({ steps: 2, labels: [label(SPACE, 0)] }, dict)).toEqual({ text: '', score: 1 })
  })
})
