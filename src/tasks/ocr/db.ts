/**
 * DB (differentiable binarization) post-process: text boxes from the detector's probability map.
 * Axis-aligned boxes from 8-connected components; PaddleOCR fits min-area rotated rectangles, which
 * matters only for skewed text.
 */
import type { Box } from './image.ts'

export interface DbOptions {
  /** Pixels above this are text (PaddleOCR det_db_thresh 0.3). */
  thresh?: number
  /** Mean probability a region needs to be kept (det_db_box_thresh 0.6). */
  boxThresh?: number
  /** Grows each box by area × ratio / perimeter on every side (det_db_unclip_ratio 1.5). */
  unclipRatio?: number
  /** Regions whose short side is below this, in map pixels, are dropped (PaddleOCR min_size 3). */
  minSize?: number
  maxCandidates?: number
}

export interface ScoredBox extends Box {
  score: number
}

/** Boxes in probability-map pixels, unclipped and clamped to the map. */
export function dbBoxes(prob: Float32Array, width: number, height: number, o: DbOptions = {}): ScoredBox[] {
  const thresh = o.thresh ?? 0.3
  const boxThresh = o.boxThresh ?? 0.6
  const unclip = o.unclipRatio ?? 1.5
  const minSize = o.minSize ?? 3
  const maxCandidates = o.maxCandidates ?? 1000
  if (prob.length !== width * height)
    throw new RangeError(`map has ${prob.length} values, not ${width}×${height}`)
  const seen = new Uint8Array(width * height)
  const stack = new Int32Array(width * height)
  const boxes: ScoredBox[] = []
  for (let start = 0; start < prob.length && boxes.length < maxCandidates; start++) {
    if (seen[start] || prob[start]! <= thresh) continue
    // Flood-fill one component, tracking its bounds and probability sum.
    let top = 0
    stack[top++] = start
    seen[start] = 1
    let [x0, y0, x1, y1] = [width, height, -1, -1]
    let sum = 0
    let count = 0
    while (top > 0) {
      const p = stack[--top]!
      const x = p % width
      const y = (p - x) / width
      sum += prob[p]!
      count++
      if (x < x0) x0 = x
      if (x > x1) x1 = x
      if (y < y0) y0 = y
      if (y > y1) y1 = y
      for (let dy = -1; dy <= 1; dy++) {
        const ny = y + dy
        if (ny < 0 || ny >= height) continue
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx
          if (nx < 0 || nx >= width) continue
          const q = ny * width + nx
          if (!seen[q] && prob[q]! > thresh) {
            seen[q] = 1
            stack[top++] = q
          }
        }
      }
    }
    const w = x1 - x0 + 1
    const h = y1 - y0 + 1
    const score = sum / count
    if (Math.min(w, h) < minSize || score < boxThresh) continue
    const d = (w * h * unclip) / (2 * (w + h))
    const bx = Math.max(0, x0 - d)
    const by = Math.max(0, y0 - d)
    const box = {
      x: bx,
      y: by,
      w: Math.min(width, x1 + 1 + d) - bx,
      h: Math.min(height, y1 + 1 + d) - by,
      score,
    }
    if (Math.min(box.w, box.h) >= minSize + 2) boxes.push(box)
  }
  return boxes
}

/** Maps boxes from map pixels to image pixels (integer, clamped to the image). */
export function scaleBoxes(boxes: ScoredBox[], scaleX: number, scaleY: number, imgW: number, imgH: number) {
  return boxes.map((b) => {
    const x = Math.max(0, Math.floor(b.x / scaleX))
    const y = Math.max(0, Math.floor(b.y / scaleY))
    const x2 = Math.min(imgW, Math.ceil((b.x + b.w) / scaleX))
    const y2 = Math.min(imgH, Math.ceil((b.y + b.h) / scaleY))
    return { x, y, w: Math.max(1, x2 - x), h: Math.max(1, y2 - y), score: b.score }
  })
}

/** Reading order: boxes grouped into rows (vertical overlap over half the shorter box), rows left to right. */
export function readingOrder<T extends Box>(boxes: T[]): T[][] {
  const rows: T[][] = []
  for (const b of [...boxes].sort((p, q) => p.y + p.h / 2 - (q.y + q.h / 2))) {
    const row = rows.find((r) => {
      const a = r[0]!
      const overlap = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y)
      return overlap > Math.min(a.h, b.h) / 2
    })
    if (row) row.push(b)
    else rows.push([b])
  }
  for (const r of rows) r.sort((p, q) => p.x - q.x)
  return rows.sort((p, q) => p[0]!.y - q[0]!.y)
}
