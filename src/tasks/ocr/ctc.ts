/** CTC greedy decoding of the recognizer's per-step character probabilities. */
import { InvalidTensorError } from '../../shared/errors.ts'
import type { NamedTensors, Tensor } from '../../shared/tensor.ts'

/** The label set PaddleOCR builds from a dictionary file: blank at 0, one entry per line, then ' '. */
export function loadDictionary(text: string): string[] {
  const lines = text.replace(/\r\n/g, '\n').split('\n')
  if (lines.at(-1) === '') lines.pop()
  return ['', ...lines, ' ']
}

export interface Decoded {
  text: string
  /** Mean probability of the kept characters (0 for an empty line). */
  score: number
}

/** One kept label of a greedy path, with the time steps its run covers (inclusive). */
export interface CtcLabel {
  label: number
  prob: number
  first: number
  last: number
}

/** A line's greedy path: where each character sits in time is what word-gap detection needs. */
export interface CtcPath {
  labels: CtcLabel[]
  /** Time steps of the line (the input width / 8 for PP-OCR). */
  steps: number
}

/** Merges repeats and drops blanks: `at(t)` gives step t's best class and its probability. */
function greedy(steps: number, at: (t: number) => [number, number]): CtcPath {
  const labels: CtcLabel[] = []
  let prev = -1
  for (let t = 0; t < steps; t++) {
    const [c, p] = at(t)
    if (c !== 0 && c === prev) labels.at(-1)!.last = t
    else if (c !== 0) labels.push({ label: c, prob: p, first: t, last: t })
    prev = c
  }
  return { labels, steps }
}

/**
 * The path's text: labels looked up in `dict`, a space before each label index in `breaks`, then
 * runs of spaces merged and the ends trimmed. The score counts the recognizer's labels only.
 */
export function pathText(path: CtcPath, dict: string[], breaks: ReadonlySet<number> = new Set()): Decoded {
  let text = ''
  let sum = 0
  for (const [k, l] of path.labels.entries()) {
    if (breaks.has(k)) text += ' '
    text += dict[l.label]
    sum += l.prob
  }
  const n = path.labels.length
  return { text: text.replace(/ {2,}/g, ' ').trim(), score: n ? sum / n : 0 }
}

function rowPath(probs: Float32Array, steps: number, classes: number, offset: number): CtcPath {
  return greedy(steps, (t) => {
    const row = offset + t * classes
    let best = 0
    let bestP = probs[row]!
    for (let c = 1; c < classes; c++) {
      const p = probs[row + c]!
      if (p > bestP) {
        bestP = p
        best = c
      }
    }
    return [best, bestP]
  })
}

const checkClasses = (classes: number, dict: string[]) => {
  if (classes !== dict.length)
    throw new InvalidTensorError(`recognizer has ${classes} classes, the dictionary ${dict.length}`)
}

/** Argmax per step, merge repeats, drop blanks. `probs` is [T, C] row-major, starting at `offset`. */
export function ctcDecode(
  probs: Float32Array,
  steps: number,
  classes: number,
  dict: string[],
  offset = 0,
): Decoded {
  checkClasses(classes, dict)
  return pathText(rowPath(probs, steps, classes, offset), dict)
}

/** Greedy paths of every line of a [N, T, C] recognizer output. */
export function ctcPathsBatch(out: Tensor, dict: string[]): CtcPath[] {
  const [n, steps, classes] = out.dims
  if (out.dtype !== 'float32' || out.dims.length !== 3 || n == null || steps == null || classes == null)
    throw new InvalidTensorError(`recognizer output must be float32 [N,T,C], got ${out.dtype} [${out.dims}]`)
  checkClasses(classes, dict)
  const probs = out.data as Float32Array
  return Array.from({ length: n }, (_, i) => rowPath(probs, steps, classes, i * steps * classes))
}

/** Decodes every line of a [N, T, C] recognizer output. */
export const ctcDecodeBatch = (out: Tensor, dict: string[]): Decoded[] =>
  ctcPathsBatch(out, dict).map((p) => pathText(p, dict))

/** Greedy paths from per-step class ids and their probabilities ([N, T] each, ppocr-v4-rec-ctc). */
export function ctcPathsIds(ids: Tensor, probs: Tensor, dict: string[]): CtcPath[] {
  const [n, steps] = ids.dims
  if (
    ids.dtype !== 'int64' ||
    probs.dtype !== 'float32' ||
    ids.dims.length !== 2 ||
    n == null ||
    steps == null
  )
    throw new InvalidTensorError(
      `recognizer ids must be int64 [N,T] with float32 probs, got ${ids.dtype} [${ids.dims}]`,
    )
  if (probs.data.length !== ids.data.length)
    throw new InvalidTensorError('recognizer ids and probs differ in size')
  const id = ids.data as BigInt64Array
  const p = probs.data as Float32Array
  return Array.from({ length: n }, (_, line) =>
    greedy(steps, (t) => {
      const c = Number(id[line * steps + t])
      if (!(c >= 0 && c < dict.length))
        throw new InvalidTensorError(`class id ${c} is outside the dictionary`)
      return [c, p[line * steps + t]!]
    }),
  )
}

/** Greedy decoding from per-step class ids and their probabilities ([N, T] each, ppocr-v4-rec-ctc). */
export const ctcDecodeIds = (ids: Tensor, probs: Tensor, dict: string[]): Decoded[] =>
  ctcPathsIds(ids, probs, dict).map((p) => pathText(p, dict))

/** Paths from either recognizer output: `ids` + `probs` (rec-ctc), or the [N, T, C] probabilities. */
export function recognizerPaths(outputs: NamedTensors, dict: string[]): CtcPath[] {
  if (outputs.ids && outputs.probs) return ctcPathsIds(outputs.ids, outputs.probs, dict)
  const probs = Object.values(outputs)[0]
  if (!probs) throw new InvalidTensorError('recognizer returned no output')
  return ctcPathsBatch(probs, dict)
}

/** Decodes either recognizer output, spaces as the recognizer gave them (see words.ts for word gaps). */
export const decodeRecognizer = (outputs: NamedTensors, dict: string[]): Decoded[] =>
  recognizerPaths(outputs, dict).map((p) => pathText(p, dict))
