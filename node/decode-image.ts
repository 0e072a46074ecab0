/**
 * PNG and JPEG files as RGBA pixels in Node, where there is no canvas (the browser's decoder is
 * src/tasks/ocr/decode.ts). Sizes are read from the header and bounded before anything is inflated.
 *   const img = await readImage('scan.png')
 */
import { readFile, stat } from 'node:fs/promises'
import { decode as decodeJpeg } from 'jpeg-js'
import { PNG } from 'pngjs'
import { InvalidOptionError, InvalidTensorError } from '../src/shared/errors.ts'
import type { RgbaImage } from '../src/tasks/ocr/image.ts'

/** Largest image decoded (40 MP ≈ 160 MB of RGBA) and largest file read. */
export const MAX_PIXELS = 40_000_000
export const MAX_IMAGE_BYTES = 64 * 1024 * 1024

export interface ImageInfo {
  format: 'png' | 'jpeg'
  width: number
  height: number
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]

/** Format and size from the header alone; an image over `maxPixels` is refused. */
export function probeImage(bytes: Uint8Array, maxPixels = MAX_PIXELS): ImageInfo {
  const info = header(bytes)
  const { format, width, height } = info
  if (width < 1 || height < 1) throw new InvalidTensorError(`${format} image is ${width}×${height}`)
  if (width * height > maxPixels)
    throw new InvalidTensorError(
      `${format} image is ${width}×${height} (${((width * height) / 1e6).toFixed(1)} MP), over the ${maxPixels / 1e6} MP limit`,
    )
  return info
}

function header(bytes: Uint8Array): ImageInfo {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (bytes.length >= 24 && PNG_SIGNATURE.every((b, i) => bytes[i] === b))
    return { format: 'png', width: dv.getUint32(16), height: dv.getUint32(20) }
  if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    // Walk the marker segments to the frame header (SOF0–SOF15 but DHT, JPG and DAC).
    for (let o = 2; o + 4 <= bytes.length; ) {
      if (bytes[o] !== 0xff) break
      const m = bytes[o + 1]!
      if (m === 0xff) {
        o++ // fill byte
        continue
      }
      if (m === 0x01 || (m >= 0xd0 && m <= 0xd9)) {
        o += 2
        continue
      }
      if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc && o + 9 <= bytes.length)
        return { format: 'jpeg', height: dv.getUint16(o + 5), width: dv.getUint16(o + 7) }
      o += 2 + dv.getUint16(o + 2)
    }
    throw new InvalidTensorError('JPEG has no frame header')
  }
  throw new InvalidTensorError('not a PNG or JPEG image')
}

/** RGBA pixels, transparent areas composited over white as the browser decoder does. */
export function decodeImage(bytes: Uint8Array, maxPixels = MAX_PIXELS): RgbaImage {
  const { format, width, height } = probeImage(bytes, maxPixels)
  let img: RgbaImage
  try {
    if (format === 'png') {
      const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
      img = {
        width: png.width,
        height: png.height,
        data: new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.byteLength),
      }
    } else {
      img = decodeJpeg(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: maxPixels / 1e6 })
    }
  } catch (err) {
    throw new InvalidTensorError(`cannot decode ${format} image: ${(err as Error).message}`)
  }
  if (img.width !== width || img.height !== height || img.data.length !== width * height * 4)
    throw new InvalidTensorError(
      `${format} image decoded to ${img.width}×${img.height}, not ${width}×${height}`,
    )
  const d = img.data
  for (let i = 3; i < d.length; i += 4) {
    const a = d[i]!
    if (a === 255) continue
    for (let c = i - 3; c < i; c++) d[c] = Math.round((d[c]! * a + 255 * (255 - a)) / 255)
    d[i] = 255
  }
  return img
}

/** A file's bytes, refused past `maxBytes` before it is read. */
export async function readBounded(path: string, maxBytes: number): Promise<Uint8Array> {
  const size = await stat(path).then(
    (s) => (s.isFile() ? s.size : -1),
    (err: Error) => {
      throw new InvalidOptionError(`cannot read ${path}: ${err.message}`)
    },
  )
  if (size < 0) throw new InvalidOptionError(`${path} is not a file`)
  if (size > maxBytes)
    throw new InvalidTensorError(`${path} is ${size} bytes, over the ${maxBytes}-byte limit`)
  return new Uint8Array(await readFile(path))
}

/** An image file, its name in any error. */
export async function readImage(
  path: string,
  maxBytes = MAX_IMAGE_BYTES,
  maxPixels = MAX_PIXELS,
): Promise<RgbaImage> {
  const bytes = await readBounded(path, maxBytes)
  try {
    return decodeImage(bytes, maxPixels)
  } catch (err) {
    throw new InvalidTensorError(`${path}: ${(err as Error).message}`)
  }
}
