/** EXIF orientation of JPEGs and PNGs in Node (node/exif.ts), applied by decodeImage as browsers do. */
import { crc32 } from 'node:zlib'
import { encode as encodeJpeg } from 'jpeg-js'
import { PNG } from 'pngjs'
import { describe, expect, it } from 'vitest'
import { decodeImage } from '../../node/decode-image.ts'
import { jpegOrientation, pngOrientation } from '../../node/exif.ts'

/** Six colours far apart, so each survives JPEG and is told from the others. */
const PALETTE = {
  A: [230, 20, 20],
  B: [20, 200, 20],
  C: [20, 20, 230],
  D: [240, 240, 240],
  E: [10, 10, 10],
  F: [230, 220, 20],
} as const
type Label = keyof typeof PALETTE

/** The 3×2 picture as stored: A B C over D E F. */
const STORED = ['ABC', 'DEF']

/** What each orientation must show, written out row by row. */
const UPRIGHT: Record<number, string[]> = {
  1: ['ABC', 'DEF'],
  2: ['CBA', 'FED'], // mirrored
  3: ['FED', 'CBA'], // 180°
  4: ['DEF', 'ABC'], // flipped
  5: ['AD', 'BE', 'CF'], // transposed
  6: ['DA', 'EB', 'FC'], // 90° clockwise
  7: ['FC', 'EB', 'DA'], // transverse
  8: ['CF', 'BE', 'AD'], // 90° counter-clockwise
}

function jpeg(rows = STORED): Uint8Array {
  const width = rows[0]!.length
  const height = rows.length
  const data = Buffer.alloc(width * height * 4)
  for (const [y, row] of rows.entries())
    for (const [x, l] of [...row].entries()) data.set([...PALETTE[l as Label], 255], (y * width + x) * 4)
  return new Uint8Array(encodeJpeg({ width, height, data }, 100).data)
}

interface Entry {
  tag: number
  type: number
  count: number
  value: number
}

/** A TIFF block: header, IFD0 at `ifd` with `entries` (or `count` claimed), next-IFD 0. */
function tiff(entries: Entry[], o: { little?: boolean; magic?: number; ifd?: number; count?: number } = {}) {
  const little = o.little ?? false
  const ifd = o.ifd ?? 8
  const bytes = new Uint8Array(8 + 2 + entries.length * 12 + 4)
  const dv = new DataView(bytes.buffer)
  bytes.set(little ? [0x49, 0x49] : [0x4d, 0x4d])
  dv.setUint16(2, o.magic ?? 42, little)
  dv.setUint32(4, ifd, little)
  dv.setUint16(8, o.count ?? entries.length, little)
  entries.forEach((e, i) => {
    const at = 10 + i * 12
    dv.setUint16(at, e.tag, little)
    dv.setUint16(at + 2, e.type, little)
    dv.setUint32(at + 4, e.count, little)
    // A SHORT sits in the first two bytes of the value field, whatever the byte order.
    if (e.type === 3) dv.setUint16(at + 8, e.value, little)
    else dv.setUint32(at + 8, e.value, little)
  })
  return bytes
}

const orientation = (value: number): Entry => ({ tag: 0x0112, type: 3, count: 1, value })

/** An APP1 segment holding `payload` (after "Exif\0\0" unless `header` says otherwise). */
function app1(payload: Uint8Array, header: number[] = [0x45, 0x78, 0x69, 0x66, 0, 0]) {
  const body = new Uint8Array([...header, ...payload])
  return new Uint8Array([0xff, 0xe1, (body.length + 2) >> 8, (body.length + 2) & 0xff, ...body])
}

/** `file` with `segments` spliced in right after SOI. */
const splice = (file: Uint8Array, ...segments: Uint8Array[]) =>
  new Uint8Array([...file.subarray(0, 2), ...segments.flatMap((s) => [...s]), ...file.subarray(2)])

/** The decoded picture as rows of palette labels, each pixel read as its nearest colour. */
function labels(bytes: Uint8Array): string[] {
  const img = decodeImage(bytes)
  const rows: string[] = []
  for (let y = 0; y < img.height; y++) {
    let row = ''
    for (let x = 0; x < img.width; x++) {
      const p = [...img.data.subarray((y * img.width + x) * 4, (y * img.width + x) * 4 + 3)]
      const [best] = Object.entries(PALETTE)
        .map(([l, c]) => [l, c.reduce((s, v, i) => s + (v - p[i]!) ** 2, 0)] as const)
        .sort((a, b) => a[1] - b[1])[0]!
      row += best
    }
    rows.push(row)
  }
  return rows
}

describe('EXIF orientation', () => {
  const plain = jpeg()

  it('the test picture decodes as encoded, pixel by pixel', () => {
    expect(labels(plain)).toEqual(STORED)
    expect(jpegOrientation(plain)).toBe(1)
  })

  it.each(
    [1, 2, 3, 4, 5, 6, 7, 8].flatMap((v) => [
      [v, 'big-endian'],
      [v, 'little-endian'],
    ]),
  )('orientation %i (%s): every pixel lands where the orientation says', (v, order) => {
    const bytes = splice(plain, app1(tiff([orientation(v as number)], { little: order === 'little-endian' })))
    expect(jpegOrientation(bytes)).toBe(v)
    expect(labels(bytes)).toEqual(UPRIGHT[v as number])
  })

  it('is found past an XMP APP1, after other IFD0 entries, and after a JFIF APP0', () => {
    const xmp = app1(new TextEncoder().encode('<x:xmpmeta/>'), [
      ...new TextEncoder().encode('http://ns.adobe.com/xap/1.0/'),
      0,
    ])
    const exif = app1(
      tiff(
        [
          { tag: 0x010f, type: 2, count: 4, value: 0x41424300 }, // Make
          { tag: 0x0110, type: 2, count: 4, value: 0x44454600 }, // Model
          orientation(6),
        ],
        { little: true },
      ),
    )
    const afterApp0 = new Uint8Array([...plain.subarray(0, 20), ...xmp, ...exif, ...plain.subarray(20)])
    expect([afterApp0[20], afterApp0[21]]).toEqual([0xff, 0xe1]) // APP0 JFIF is 2 + 18 bytes
    expect(jpegOrientation(afterApp0)).toBe(6)
    expect(labels(afterApp0)).toEqual(UPRIGHT[6])
  })

  const malformed: [string, Uint8Array][] = [
    ['wrong magic', app1(tiff([orientation(6)], { magic: 43 }))],
    ['wrong byte order mark', app1(new Uint8Array([0x49, 0x4d, ...tiff([orientation(6)]).subarray(2)]))],
    ['wrong APP1 header', app1(tiff([orientation(6)]), [0x45, 0x78, 0x69, 0x67, 0, 0])],
    ['IFD offset past the end', app1(tiff([orientation(6)], { ifd: 0xfffffff0 }))],
    ['IFD offset at the last byte', app1(tiff([orientation(6)], { ifd: 8 + 2 + 12 + 4 - 1 }))],
    ['IFD offset inside the header', app1(tiff([orientation(6)], { ifd: 2 }))],
    [
      'huge entry count, no orientation',
      app1(tiff([{ ...orientation(6), tag: 0x010f, type: 2 }], { count: 0xffff })),
    ],
    ['orientation 0', app1(tiff([orientation(0)]))],
    ['orientation 9', app1(tiff([orientation(9)]))],
    ['orientation 0xffff', app1(tiff([orientation(0xffff)], { little: true }))],
    ['orientation as a LONG', app1(tiff([{ tag: 0x0112, type: 4, count: 1, value: 6 }]))],
    ['orientation with count 2', app1(tiff([{ ...orientation(6), count: 2 }]))],
    ['empty EXIF', app1(new Uint8Array(0))],
  ]
  it.each(malformed)('%s: decodes upright as stored (orientation 1)', (_, segment) => {
    const bytes = splice(plain, segment)
    expect(jpegOrientation(bytes)).toBe(1)
    expect(labels(bytes)).toEqual(STORED)
  })

  it('a truncated EXIF block, cut at every length, is ignored (or read once whole)', () => {
    const whole = tiff([{ tag: 0x010f, type: 2, count: 4, value: 0 }, orientation(8)])
    for (let n = 0; n <= whole.length; n++) {
      const bytes = splice(plain, app1(whole.subarray(0, n)))
      // The entry is read once its 12 bytes are there; the next-IFD offset after it is not needed.
      expect(jpegOrientation(bytes)).toBe(n >= 8 + 2 + 24 ? 8 : 1)
    }
    const cut = splice(plain, app1(whole.subarray(0, 20)))
    expect(labels(cut)).toEqual(STORED)
  })

  it('a file cut anywhere, or segment lengths past the end, never throw from the EXIF reader', () => {
    const bytes = splice(plain, app1(tiff([orientation(3)])))
    for (let n = 0; n <= bytes.length; n++) expect([1, 3]).toContain(jpegOrientation(bytes.subarray(0, n)))
    const long = bytes.slice()
    long[4] = 0xff // APP1 length 0xff??, past the end of the file
    expect(jpegOrientation(long)).toBe(1)
    expect(() => decodeImage(long)).toThrow(expect.objectContaining({ name: 'InvalidTensorError' }))
  })

  it('random damage to the EXIF block gives 1–8 and never throws', () => {
    const good = app1(tiff([{ tag: 0x010f, type: 2, count: 4, value: 0 }, orientation(5)], { little: true }))
    let seed = 12345
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0
      return (seed >>> 8) % n
    }
    const seen = new Set<number>()
    for (let i = 0; i < 3000; i++) {
      const seg = good.slice()
      for (let k = 1 + rand(4); k > 0; k--) seg[4 + rand(seg.length - 4)] = rand(256) // the length is kept
      const v = jpegOrientation(splice(plain, seg))
      expect(v).toBeGreaterThanOrEqual(1)
      expect(v).toBeLessThanOrEqual(8)
      seen.add(v)
    }
    expect(seen.has(1) && seen.has(5)).toBe(true)
  })

  it('a wide photo tagged 90° clockwise is shrunk to MAX_SIDE and stands upright', () => {
    const width = 5000
    const height = 8
    const data = Buffer.alloc(width * height * 4)
    for (let p = 0; p < width * height; p++)
      data.set([...(p % width < 2500 ? PALETTE.A : PALETTE.C), 255], p * 4)
    const wide = new Uint8Array(encodeJpeg({ width, height, data }, 90).data)
    const img = decodeImage(splice(wide, app1(tiff([orientation(6)]))))
    expect([img.width, img.height]).toEqual([7, 4096]) // 8 × 0.8192 rounds to 7
    const px = (x: number, y: number) => [...img.data.subarray((y * 7 + x) * 4, (y * 7 + x) * 4 + 3)]
    // The stored left half (red) is now the top, the right half (blue) the bottom.
    for (const x of [0, 3, 6]) {
      expect(px(x, 10)[0]).toBeGreaterThan(200)
      expect(px(x, 4085)[2]).toBeGreaterThan(200)
    }
  })
})

/** The stored picture as a PNG (lossless: every pixel exactly its palette colour). */
function png(rows = STORED): Uint8Array {
  const img = new PNG({ width: rows[0]!.length, height: rows.length })
  for (const [y, row] of rows.entries())
    for (const [x, l] of [...row].entries())
      img.data.set([...PALETTE[l as Label], 255], (y * img.width + x) * 4)
  return new Uint8Array(PNG.sync.write(img))
}

/** A PNG chunk; `crc` damaged on request. */
function chunk(type: string, data: Uint8Array, o: { badCrc?: boolean } = {}): Uint8Array {
  const out = new Uint8Array(12 + data.length)
  const dv = new DataView(out.buffer)
  dv.setUint32(0, data.length)
  out.set(new TextEncoder().encode(type), 4)
  out.set(data, 8)
  dv.setUint32(8 + data.length, (crc32(out.subarray(4, 8 + data.length)) ^ (o.badCrc ? 1 : 0)) >>> 0)
  return out
}

/** `file` with `chunks` right after IHDR (8 + 25 bytes), or right before IEND. */
const withChunks = (
  file: Uint8Array,
  chunks: Uint8Array[],
  at: 'after IHDR' | 'before IEND' = 'after IHDR',
) => {
  const i = at === 'after IHDR' ? 33 : file.length - 12
  return new Uint8Array([...file.subarray(0, i), ...chunks.flatMap((c) => [...c]), ...file.subarray(i)])
}

// Chromium's behaviour, checked with createImageBitmap on each case: it reads an eXIf chunk before
// IDAT with an intact CRC holding a bare TIFF block, and ignores one after IDAT, damaged, or behind
// an "Exif\0\0" header as JPEG's APP1 has it.
describe('EXIF orientation of PNGs (eXIf)', () => {
  const plain = png()
  const exif = (v: number, little = false) => chunk('eXIf', tiff([orientation(v)], { little }))

  it('the test picture decodes as encoded; no eXIf is orientation 1', () => {
    expect([labels(plain), pngOrientation(plain)]).toEqual([STORED, 1])
  })

  it.each([1, 2, 3, 4, 5, 6, 7, 8])('orientation %i: every pixel lands where the orientation says', (v) => {
    for (const little of [false, true]) {
      const bytes = withChunks(plain, [
        chunk('tEXt', new TextEncoder().encode('Comment\0x')),
        exif(v, little),
      ])
      expect([pngOrientation(bytes), labels(bytes)]).toEqual([v, UPRIGHT[v]])
    }
  })

  const ignored: [string, Uint8Array][] = [
    ['after IDAT', withChunks(plain, [exif(6)], 'before IEND')],
    [
      'behind an Exif\\0\\0 header',
      withChunks(plain, [chunk('eXIf', app1(tiff([orientation(6)])).subarray(4))]),
    ],
    ['orientation 9', withChunks(plain, [exif(9)])],
    ['empty', withChunks(plain, [chunk('eXIf', new Uint8Array(0))])],
  ]
  it.each(ignored)('%s: decodes upright as stored (orientation 1)', (_, bytes) => {
    expect([pngOrientation(bytes), labels(bytes)]).toEqual([1, STORED])
  })

  it('a damaged eXIf chunk is skipped, and a chunk length past the end stops the reader', () => {
    expect(pngOrientation(withChunks(plain, [chunk('eXIf', tiff([orientation(6)]), { badCrc: true })]))).toBe(
      1,
    )
    expect(
      pngOrientation(withChunks(plain, [chunk('eXIf', tiff([orientation(6)]), { badCrc: true }), exif(3)])),
    ).toBe(3)
    const long = withChunks(plain, [exif(6)])
    new DataView(long.buffer).setUint32(33, 0xfffffff0) // its length, past the end of the file
    expect(pngOrientation(long)).toBe(1)
    const bytes = withChunks(plain, [exif(8)])
    for (let n = 0; n <= bytes.length; n++) expect([1, 8]).toContain(pngOrientation(bytes.subarray(0, n)))
  })
})
