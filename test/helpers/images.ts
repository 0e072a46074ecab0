/** Deterministic test pictures for the OCR pipeline. */
import type { Box, RgbaImage } from '../../src/tasks/ocr/image.ts'

/** A white image with black filled rectangles. */
export function rectsImage(width: number, height: number, rects: Box[]): RgbaImage {
  const data = new Uint8Array(width * height * 4).fill(255)
  for (const r of rects) {
    for (let y = r.y; y < Math.min(height, r.y + r.h); y++) {
      for (let x = r.x; x < Math.min(width, r.x + r.w); x++)
        data.fill(0, (y * width + x) * 4, (y * width + x) * 4 + 3)
    }
  }
  return { width, height, data }
}
