/**
 * PNG and JPEG files as RGBA pixels in Node, where there is no canvas, matching the browser's decoder
 * (src/tasks/ocr/decode.ts): turned upright by the EXIF orientation, composited over white,
 * and shrunk to at most MAX_SIDE a side. Sizes are read from the header and bounded before anything is inflated.
 *   const img = await readImage('scan.png')
 */
import { readFile, stat } from 'node:fs/promises'
import { decode as decodeJpeg } from 'jpeg-js'
import { PNG } from 'pngjs'
import { InvalidOptionError, InvalidTensorError } from '../src/shared/errors.ts'
import { MAX_SIDE, type RgbaImage } from '../src/tasks/ocr/image.ts'
import { jpegOrientation, orient, pngOrientation } from './exif.ts'

/** Largest image decoded (40 MP ≈ 160 MB of RGBA) and largest file read. */
export const MAX_PIXELS = 40_000_000
export const MAX_IMAGE_BYTES = 64 * 1024 * 1024
export { MAX_SIDE } from '../src/tasks/ocr/image.ts'

export interface ImageInfo {
  format: 'png' | 'jpeg'
  width: number
  height: number
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]

/** Format and size as stored (before EXIF orientation) from the header alone; an image over `maxPixels` is refused. */
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

/**
 * RGBA pixels as the browser decoder gives them: transparent areas composited over white,
 * shrunk by area averaging so the longest side is at most `maxSide`, then turned upright.
 */
export function decodeImage(bytes: Uint8Array, maxPixels = MAX_PIXELS, maxSide = MAX_SIDE): RgbaImage {
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
  // Shrinking before turning is the same picture (the box filter treats both axes alike) for less work.
  const small = shrink(img, maxSide)
  return orient(small, format === 'jpeg' ? jpegOrientation(bytes) : pngOrientation(bytes))
}

/**
 * `img` (opaque) scaled by area averaging so its longest side is at most `maxSide`, sizes rounded as
 * the browser's are. Each output pixel is the mean of the source area it covers, partial pixels
 * weighted by their overlap; one output row is built at a time, so memory stays at a few rows.
 */
export function shrink(img: RgbaImage, maxSide = MAX_SIDE): RgbaImage {
  const { width: w, height: h, data: src } = img
  const scale = maxSide / Math.max(w, h)
  if (scale >= 1) return img
  const outW = Math.max(1, Math.round(w * scale))
  const outH = Math.max(1, Math.round(h * scale))
  const cols = spans(w, outW)
  const rows = spans(h, outH)
  const norm = 1 / ((w / outW) * (h / outH))
  const out = new Uint8Array(outW * outH * 4).fill(255)
  const line = new Float64Array(outW * 3) // one source row, averaged across
  const acc = new Float64Array(outW * 3) // one output row, summed down
  let lineRow = -1
  for (let oy = 0; oy < outH; oy++) {
    acc.fill(0)
    for (let k = rows.start[oy]!; k < rows.start[oy + 1]!; k++) {
      const sy = rows.index[k]!
      if (sy !== lineRow) {
        // A source row straddling two output rows is averaged across once.
        across(src, sy * w * 4, cols, line)
        lineRow = sy
      }
      const wy = rows.weight[k]!
      for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + line[i]! * wy
    }
    for (let ox = 0, o = oy * outW * 4; ox < outW; ox++, o += 4)
      for (let c = 0; c < 3; c++) out[o + c] = Math.min(255, Math.round(acc[ox * 3 + c]! * norm))
  }
  return { width: outW, height: outH, data: out }
}

/** For each of `n` output cells over `size` source pixels: the pixels it covers and by how much (CSR). */
interface Spans {
  start: Uint32Array
  index: Uint32Array
  weight: Float64Array
}

function spans(size: number, n: number): Spans {
  const start = new Uint32Array(n + 1)
  const index = new Uint32Array(size + n)
  const weight = new Float64Array(size + n)
  let k = 0
  for (let o = 0; o < n; o++) {
    start[o] = k
    const lo = (o * size) / n
    const hi = ((o + 1) * size) / n
    for (let s = Math.floor(lo); s < hi && s < size; s++) {
      const cover = Math.min(hi, s + 1) - Math.max(lo, s)
      if (cover <= 0) continue
      index[k] = s
      weight[k++] = cover
    }
  }
  start[n] = k
  return { start, index, weight }
}

/** One source row (RGB at `from`) summed into `line` by `cols`' weights. */
function across(src: Uint8Array | Uint8ClampedArray, from: number, cols: Spans, line: Float64Array): void {
  const n = cols.start.length - 1
  for (let ox = 0; ox < n; ox++) {
    let r = 0
    let g = 0
    let b = 0
    for (let k = cols.start[ox]!; k < cols.start[ox + 1]!; k++) {
      const p = from + cols.index[k]! * 4
      const wx = cols.weight[k]!
      r += src[p]! * wx
      g += src[p + 1]! * wx
      b += src[p + 2]! * wx
    }
    line[ox * 3] = r
    line[ox * 3 + 1] = g
    line[ox * 3 + 2] = b
  }
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
