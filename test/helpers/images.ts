/** Deterministic test pictures for the OCR pipeline. */
import type { Page } from 'playwright-core'
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

/** `text` drawn black on white in a tab's canvas, encoded by the browser as each of `types` (bytes). */
export async function renderedText(
  page: Page,
  text: string,
  o: { width: number; height: number; font: string; x: number },
  types: ('image/png' | 'image/jpeg')[] = ['image/png'],
): Promise<Buffer[]> {
  const urls = await page.evaluate(
    ({ text, o, types }) => {
      const c = document.createElement('canvas')
      c.width = o.width
      c.height = o.height
      const g = c.getContext('2d')!
      g.fillStyle = '#fff'
      g.fillRect(0, 0, c.width, c.height)
      g.fillStyle = '#000'
      g.font = o.font
      g.textBaseline = 'middle'
      g.fillText(text, o.x, o.height / 2)
      return types.map((t) => c.toDataURL(t, 0.92))
    },
    { text, o, types },
  )
  return urls.map((u) => Buffer.from(u.split(',')[1]!, 'base64'))
}
