/**
 * Word gaps the recognizer missed. PP-OCRv4 (a Chinese model) emits its space class for most English
 * word gaps but drops some, mostly in capitals and monospace ("OPEN GRADIENT" → "OPENGRADIENT").
 * The crop shows them: between two characters of the path, a word gap is a run of ink-free columns
 * much wider than the gaps inside words of the same line.
 *   const lines = decodeLines(outputs, x, boxes.map(recWidth), dict)
 */
import type { NamedTensors, Tensor } from '../../shared/tensor.ts'
import { type CtcPath, type Decoded, pathText, recognizerPaths } from './ctc.ts'

/** Which columns of a crop hold ink, and how tall its ink is (rows, in input pixels). */
export interface Ink {
  columns: Uint8Array
  height: number
}

/** Below this contrast (of 2, the normalized range) a crop has no readable ink. */
const MIN_CONTRAST = 0.25
/** Rows at least this share of the densest row's ink end the body; below are descenders. */
const BODY_ROW = 0.4
/** Gaps under this × ink height are taken as gaps inside words, for the line's typical gap. */
const IN_WORD = 0.25
/** A word gap is wider than the line's typical in-word gap by this × ink height, */
const WORD_GAP = 0.18
/** and at least this share of the narrowest gap where the recognizer itself put a space. */
const MODEL_SHARE = 0.6
/** Tabular digits leave wide gaps around the narrow "1": next to it, numbers need a wider gap to split. */
const NUMBER_FACTOR = 1.5

/**
 * The ink of line `n` of a recognition input [N, 3, H, W] (normalized to [-1, 1]), over its first
 * `width` columns (the rest is padding). Ink is whatever differs from the median pixel by more than
 * half the crop's contrast, so dark-on-light and light-on-dark read alike. Columns count ink down to
 * the body's last row: descenders (y, j, g) reach under the next word's gap.
 */
export function lineInk(x: Tensor, n: number, width: number): Ink | undefined {
  const [, , h, W] = x.dims as [number, number, number, number]
  const data = x.data as Float32Array
  const plane = h * W
  const base = n * 3 * plane
  const cols = Math.min(width, W)
  const gray = new Float32Array(h * cols)
  const hist = new Uint32Array(256)
  for (let y = 0; y < h; y++) {
    for (let c = 0; c < cols; c++) {
      const i = base + y * W + c
      const g = (data[i]! + data[i + plane]! + data[i + 2 * plane]!) / 3
      gray[y * cols + c] = g
      hist[Math.max(0, Math.min(255, Math.round((g + 1) * 127.5)))]!++
    }
  }
  // Background: the median pixel (text covers less than half of a line's crop).
  let bin = 0
  let seen = hist[0]!
  while (bin < 255 && seen * 2 < gray.length) seen += hist[++bin]!
  const bg = bin / 127.5 - 1
  let contrast = 0
  for (const g of gray) contrast = Math.max(contrast, Math.abs(g - bg))
  if (contrast < MIN_CONTRAST) return undefined
  const isInk = (y: number, c: number) => Math.abs(gray[y * cols + c]! - bg) > contrast / 2
  const rows = Array.from({ length: h }, (_, y) => {
    let k = 0
    for (let c = 0; c < cols; c++) k += isInk(y, c) ? 1 : 0
    return k
  })
  const densest = Math.max(...rows)
  const top = rows.findIndex((k) => k > 0)
  const bottom = rows.findLastIndex((k) => k > 0)
  const body = rows.findLastIndex((k) => k >= BODY_ROW * densest)
  const columns = new Uint8Array(cols)
  for (let c = 0; c < cols; c++) {
    for (let y = top; y <= body; y++) {
      if (isInk(y, c)) {
        columns[c] = 1
        break
      }
    }
  }
  return { columns, height: bottom - top + 1 }
}

/** Longest run of ink-free columns in [from, to). */
function widestGap(columns: Uint8Array, from: number, to: number): number {
  let best = 0
  let run = 0
  for (let c = Math.max(0, from); c < Math.min(to, columns.length); c++) {
    run = columns[c] ? 0 : run + 1
    if (run > best) best = run
  }
  return best
}

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b)
  return s.length ? s[s.length >> 1]! : 0
}
/** Two characters of a number, one of them a "1": the narrow tabular digit. */
const NUMERIC = /^(?=.*1)[\d.,]{2}$/
/** CJK text has no spaces; its punctuation (。，) leaves most of its cell blank. */
const CJK = /[\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}\p{sc=Hangul}\u3000-\u303f\uff00-\uffef]/u

/**
 * Label indices of `path` that start a word the recognizer ran into the previous one: the gap
 * between the two characters' positions is a word gap by the line's own measure (see the constants).
 * Only between non-CJK characters; elsewhere the recognizer's spaces stand.
 * `stepWidth` is input columns per time step.
 */
export function wordBreaks(path: CtcPath, dict: string[], ink: Ink, stepWidth: number): Set<number> {
  const space = dict.length - 1
  const chars = [...path.labels.keys()].filter((k) => path.labels[k]!.label !== space)
  const center = (k: number) => ((path.labels[k]!.first + path.labels[k]!.last + 1) / 2) * stepWidth
  const pairs = chars.slice(1).map((k, i) => {
    const prev = chars[i]!
    const gap = widestGap(ink.columns, Math.floor(center(prev)), Math.ceil(center(k)))
    const two = dict[path.labels[prev]!.label]! + dict[path.labels[k]!.label]!
    return { k, gap, spaced: k > prev + 1, numeric: NUMERIC.test(two), cjk: CJK.test(two) }
  })
  const h = ink.height
  const modelGaps = pairs.filter((p) => p.spaced).map((p) => p.gap)
  const threshold = Math.max(
    median(pairs.map((p) => p.gap).filter((g) => g < IN_WORD * h)) + WORD_GAP * h,
    modelGaps.length ? MODEL_SHARE * Math.min(...modelGaps) : 0,
  )
  const breaks = new Set<number>()
  for (const p of pairs)
    if (!p.spaced && !p.cjk && p.gap >= threshold * (p.numeric ? NUMBER_FACTOR : 1)) breaks.add(p.k)
  return breaks
}

/**
 * Decodes a recognition job's outputs with word gaps: the recognizer's spaces, plus those its input
 * `x` shows. `widths[n]` is line n's crop width in `x` (recWidth of its box).
 */
export function decodeLines(
  outputs: NamedTensors,
  x: Tensor,
  widths: readonly number[],
  dict: string[],
): Decoded[] {
  const W = x.dims[3]!
  return recognizerPaths(outputs, dict).map((path, n) => {
    const ink = n < widths.length ? lineInk(x, n, widths[n]!) : undefined
    return pathText(path, dict, ink ? wordBreaks(path, dict, ink, W / path.steps) : undefined)
  })
}
