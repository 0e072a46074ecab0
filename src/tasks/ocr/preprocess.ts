/** PP-OCR input tensors: detection (resize to multiples of 32, ImageNet mean/std) and recognition crops. */
import type { Tensor } from '../../shared/tensor.ts'
import { type Box, type RgbaImage, sampleChw } from './image.ts'

// PaddleOCR's NormalizeImage constants, applied to channels in BGR order as PaddleOCR does.
const MEAN = [0.485, 0.456, 0.406]
const STD = [0.229, 0.224, 0.225]
const detNorm = (v: number, c: number) => (v / 255 - MEAN[c]!) / STD[c]!
const recNorm = (v: number) => (v / 255 - 0.5) / 0.5

export const REC_HEIGHT = 48
/** Widest recognition input; longer lines are squeezed (PaddleOCR caps by the batch's widest ratio). */
export const REC_MAX_WIDTH = 2400

export interface DetInput {
  tensor: Tensor
  /** Map pixels per original pixel, per axis. */
  scaleX: number
  scaleY: number
}

/** DetResizeForTest, limit_type "max": longest side ≤ limitSide, both sides rounded to multiples of 32. */
export function detInput(img: RgbaImage, limitSide = 960): DetInput {
  const ratio = Math.max(img.width, img.height) > limitSide ? limitSide / Math.max(img.width, img.height) : 1
  const h = Math.max(32, Math.round((img.height * ratio) / 32) * 32)
  const w = Math.max(32, Math.round((img.width * ratio) / 32) * 32)
  const data = new Float32Array(3 * h * w)
  sampleChw(img, { x: 0, y: 0, w: img.width, h: img.height }, w, h, data, 0, w, detNorm)
  return {
    tensor: { dtype: 'float32', dims: [1, 3, h, w], data },
    scaleX: w / img.width,
    scaleY: h / img.height,
  }
}

/** Lines at least this much taller than wide are read as vertical and rotated (PaddleOCR: 1.5). */
const isVertical = (b: Box) => b.h >= 1.5 * b.w

/** Width a crop takes at height 48, keeping its aspect ratio. */
export function recWidth(b: Box): number {
  const [w, h] = isVertical(b) ? [b.h, b.w] : [b.w, b.h]
  return Math.max(8, Math.min(REC_MAX_WIDTH, Math.ceil((REC_HEIGHT * w) / h)))
}

/**
 * A recognition batch [N,3,48,W]: each box resized to height 48 keeping its ratio, normalized to
 * [-1, 1], padded on the right with 0. W is the widest crop, at least 320 as in PaddleOCR.
 */
export function recInput(img: RgbaImage, boxes: Box[]): Tensor {
  const W = Math.max(320, ...boxes.map(recWidth))
  const plane = REC_HEIGHT * W
  const data = new Float32Array(boxes.length * 3 * plane) // zero padding
  boxes.forEach((b, n) => {
    sampleChw(img, b, recWidth(b), REC_HEIGHT, data, n * 3 * plane, W, recNorm, isVertical(b))
  })
  return { dtype: 'float32', dims: [boxes.length, 3, REC_HEIGHT, W], data }
}

/** Splits boxes (sorted by width, as PaddleOCR does, to limit padding) into batches that fit one job. */
export function recBatches(boxes: Box[], maxBoxes: number, maxWidthSum = 3200): number[][] {
  const order = boxes.map((b, i) => ({ i, w: Math.max(320, recWidth(b)) })).sort((a, b) => a.w - b.w)
  const batches: number[][] = []
  let cur: number[] = []
  let widest = 0
  for (const { i, w } of order) {
    // The batch is padded to its widest crop: keep N × W bounded so outputs stay well under 16 MiB.
    if (cur.length && (cur.length >= maxBoxes || (cur.length + 1) * Math.max(widest, w) > maxWidthSum)) {
      batches.push(cur)
      cur = []
      widest = 0
    }
    cur.push(i)
    widest = Math.max(widest, w)
  }
  if (cur.length) batches.push(cur)
  return batches
}
