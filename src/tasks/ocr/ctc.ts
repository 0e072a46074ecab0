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

/** Argmax per step, merge repeats, drop blanks. `probs` is [T, C] row-major, starting at `offset`. */
export function ctcDecode(
  probs: Float32Array,
  steps: number,
  classes: number,
  dict: string[],
  offset = 0,
): Decoded {
  if (classes !== dict.length)
    throw new InvalidTensorError(`recognizer has ${classes} classes, the dictionary ${dict.length}`)
  let text = ''
  let sum = 0
  let kept = 0
  let prev = -1
  for (let t = 0; t < steps; t++) {
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
    if (best !== 0 && best !== prev) {
      text += dict[best]
      sum += bestP
      kept++
    }
    prev = best
  }
  return { text, score: kept ? sum / kept : 0 }
}

/** Decodes every line of a [N, T, C] recognizer output. */
export function ctcDecodeBatch(out: Tensor, dict: string[]): Decoded[] {
  const [n, steps, classes] = out.dims
  if (out.dtype !== 'float32' || out.dims.length !== 3 || n == null || steps == null || classes == null)
    throw new InvalidTensorError(`recognizer output must be float32 [N,T,C], got ${out.dtype} [${out.dims}]`)
  const probs = out.data as Float32Array
  return Array.from({ length: n }, (_, i) => ctcDecode(probs, steps, classes, dict, i * steps * classes))
}

/** Greedy decoding from per-step class ids and their probabilities ([N, T] each, ppocr-v4-rec-ctc). */
export function ctcDecodeIds(ids: Tensor, probs: Tensor, dict: string[]): Decoded[] {
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
  return Array.from({ length: n }, (_, line) => {
    let text = ''
    let sum = 0
    let kept = 0
    let prev = -1
    for (let t = line * steps; t < (line + 1) * steps; t++) {
      const c = Number(id[t])
      if (!(c >= 0 && c < dict.length))
        throw new InvalidTensorError(`class id ${c} is outside the dictionary`)
      if (c !== 0 && c !== prev) {
        text += dict[c]
        sum += p[t]!
        kept++
      }
      prev = c
    }
    return { text, score: kept ? sum / kept : 0 }
  })
}

/** Decodes either recognizer output: `ids` + `probs` (rec-ctc), or the [N, T, C] probabilities. */
export function decodeRecognizer(outputs: NamedTensors, dict: string[]): Decoded[] {
  if (outputs.ids && outputs.probs) return ctcDecodeIds(outputs.ids, outputs.probs, dict)
  const probs = Object.values(outputs)[0]
  if (!probs) throw new InvalidTensorError('recognizer returned no output')
  return ctcDecodeBatch(probs, dict)
}
