/**
 * A JPEG's or PNG's EXIF orientation, and RGBA pixels turned upright by it, as browsers do by default
 * (`image-orientation: from-image`, and `createImageBitmap` in src/tasks/ocr/decode.ts).
 *   const img = orient(decoded, jpegOrientation(bytes))
 * Every byte is untrusted: each read is bounded, and an orientation that cannot be read is 1
 * (upright as stored), which is what Chromium and Firefox show for a malformed EXIF block.
 */
import { crc32 } from 'node:zlib'
import type { RgbaImage } from '../src/tasks/ocr/image.ts'

/** EXIF values 1–8: 1 upright, 2 mirrored, 3 rotated 180°, 4 flipped, 5 transposed, 6 needs 90° clockwise, 7 transverse, 8 needs 90° counter-clockwise. */
export type Orientation = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8

const ORIENTATION_TAG = 0x0112
const SHORT = 3

/** The orientation in the first APP1 `Exif\0\0` segment that carries one in IFD0; 1 when none does. */
export function jpegOrientation(bytes: Uint8Array): Orientation {
  if (bytes[0] !== 0xff || bytes[1] !== 0xd8) return 1
  // Walk the marker segments up to the scan: metadata segments all come before it.
  for (let o = 2; o + 4 <= bytes.length; ) {
    if (bytes[o] !== 0xff) return 1
    const m = bytes[o + 1]!
    if (m === 0xff) {
      o++ // fill byte
      continue
    }
    if (m === 0x01 || (m >= 0xd0 && m <= 0xd7)) {
      o += 2
      continue
    }
    if (m === 0xd8 || m === 0xd9 || m === 0xda) return 1
    const end = o + 2 + ((bytes[o + 2]! << 8) | bytes[o + 3]!)
    if (end > bytes.length) return 1
    if (m === 0xe1) {
      const value = exifOrientation(bytes.subarray(o + 4, end))
      if (value) return value
    }
    o = end
  }
  return 1
}

/**
 * The orientation in a PNG's eXIf chunk, read as Chromium reads it (checked against it: a chunk
 * before IDAT, its CRC intact, a bare TIFF block with no "Exif\0\0" in front); 1 when none has one.
 */
export function pngOrientation(bytes: Uint8Array): Orientation {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  for (let o = 8; o + 12 <= bytes.length; ) {
    const length = dv.getUint32(o)
    const data = o + 8
    if (length > bytes.length - data - 4) return 1
    const type = String.fromCharCode(...bytes.subarray(o + 4, data))
    if (type === 'IDAT' || type === 'IEND') return 1
    // A damaged ancillary chunk is skipped, as libpng does.
    if (type === 'eXIf' && crc32(bytes.subarray(o + 4, data + length)) === dv.getUint32(data + length))
      return tiffOrientation(bytes.subarray(data, data + length)) || 1
    o = data + length + 4
  }
  return 1
}

const EXIF_HEADER = [0x45, 0x78, 0x69, 0x66, 0, 0] // "Exif\0\0"

/** The orientation in one APP1 payload, or 0 when it is not EXIF or has no readable one. */
function exifOrientation(app1: Uint8Array): Orientation | 0 {
  if (app1.length < 6 + 8 || !EXIF_HEADER.every((b, i) => app1[i] === b)) return 0
  return tiffOrientation(app1.subarray(6))
}

/** The orientation in IFD0 of a TIFF block, or 0 when it has no readable one. */
function tiffOrientation(tiff: Uint8Array): Orientation | 0 {
  if (tiff.length < 8) return 0
  const little = tiff[0] === 0x49 && tiff[1] === 0x49 // "II"; "MM" is big-endian
  if (!little && !(tiff[0] === 0x4d && tiff[1] === 0x4d)) return 0
  const dv = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength)
  if (dv.getUint16(2, little) !== 42) return 0
  const ifd = dv.getUint32(4, little) // offsets count from the TIFF header
  if (ifd < 8 || ifd > tiff.length - 2) return 0
  const count = dv.getUint16(ifd, little)
  // The count is bounded by what the block holds, however large it claims to be.
  for (let i = 0, e = ifd + 2; i < count && e + 12 <= tiff.length; i++, e += 12) {
    if (dv.getUint16(e, little) !== ORIENTATION_TAG) continue
    // As Chromium: one SHORT, stored in the entry itself; anything else is not an orientation.
    if (dv.getUint16(e + 2, little) !== SHORT || dv.getUint32(e + 4, little) !== 1) return 0
    const v = dv.getUint16(e + 8, little)
    return v >= 1 && v <= 8 ? (v as Orientation) : 0
  }
  return 0
}

type Affine = [number, number, number, number, number, number]

/** `img` turned upright for `orientation` (a new image; `img` itself when it is 1). */
export function orient(img: RgbaImage, orientation: Orientation): RgbaImage {
  if (orientation === 1) return img
  const { width: w, height: h } = img
  const swap = orientation >= 5
  const outW = swap ? h : w
  const outH = swap ? w : h
  const src = words(img.data)
  const out = new Uint8Array(outW * outH * 4)
  const dst = new Uint32Array(out.buffer)
  // Output pixel (x, y) reads stored pixel (sx, sy) = (x0 + x·dxX + y·dxY, y0 + x·dyX + y·dyY).
  const [x0, dxX, dxY, y0, dyX, dyY] = (
    {
      2: [w - 1, -1, 0, 0, 0, 1],
      3: [w - 1, -1, 0, h - 1, 0, -1],
      4: [0, 1, 0, h - 1, 0, -1],
      5: [0, 0, 1, 0, 1, 0],
      6: [0, 0, 1, h - 1, -1, 0],
      7: [w - 1, 0, -1, h - 1, -1, 0],
      8: [w - 1, 0, -1, 0, 1, 0],
    } satisfies Record<2 | 3 | 4 | 5 | 6 | 7 | 8, Affine>
  )[orientation]
  const step = dxX + dyX * w // source index step along an output row
  for (let y = 0, d = 0; y < outH; y++) {
    let s = x0 + y * dxY + (y0 + y * dyY) * w
    for (let x = 0; x < outW; x++, d++, s += step) dst[d] = src[s]!
  }
  return { width: outW, height: outH, data: out }
}

/** RGBA bytes as one 32-bit word a pixel (copied when the bytes are not 4-byte aligned). */
function words(data: Uint8Array | Uint8ClampedArray): Uint32Array {
  const bytes = data.byteOffset % 4 === 0 ? data : new Uint8Array(data)
  return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2)
}
