/** Browser image decoding into RGBA pixels, transparent areas composited over white. */
import { InvalidTensorError } from '../../shared/errors.ts'
import { MAX_SIDE, type RgbaImage } from './image.ts'

export async function decodeImage(source: Blob | ImageBitmap | HTMLCanvasElement): Promise<RgbaImage> {
  let bitmap: ImageBitmap | HTMLCanvasElement
  try {
    bitmap = source instanceof Blob ? await createImageBitmap(source) : source
  } catch (err) {
    throw new InvalidTensorError(`cannot decode image: ${(err as Error).message}`)
  }
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height))
  const width = Math.max(1, Math.round(bitmap.width * scale))
  const height = Math.max(1, Math.round(bitmap.height * scale))
  const canvas = new OffscreenCanvas(width, height)
  const g = canvas.getContext('2d', { willReadFrequently: true })
  if (!g) throw new InvalidTensorError('no 2D canvas context')
  g.fillStyle = '#fff'
  g.fillRect(0, 0, width, height)
  g.drawImage(bitmap, 0, 0, width, height)
  if (source instanceof Blob && 'close' in bitmap) bitmap.close()
  const { data } = g.getImageData(0, 0, width, height)
  return { width, height, data }
}
