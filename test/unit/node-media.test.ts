/** Media decoding without a browser: the resampler, WAV files, and PNG/JPEG into RGBA (node/decode-image.ts). */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { encode as encodeJpeg } from 'jpeg-js'
import { PNG } from 'pngjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodeImage, MAX_SIDE, probeImage, readImage, shrink } from '../../node/decode-image.ts'
import { resample } from '../../src/tasks/vad/resample.ts'
import { parseWav, wavTo16k } from '../../src/tasks/vad/wav.ts'

const tone = (rate: number, hz: number, seconds: number, amp = 0.5) =>
  Float32Array.from(
    { length: Math.round(rate * seconds) },
    (_, i) => amp * Math.sin((2 * Math.PI * hz * i) / rate),
  )

/** The strongest frequency in [lo, hi] (0.25 Hz steps) and its amplitude, over `x`'s middle second. */
function peak(x: Float32Array, rate: number, lo: number, hi: number) {
  const from = Math.floor((x.length - rate) / 2)
  const seg = x.subarray(from, from + rate)
  let best = { hz: 0, amp: 0 }
  for (let hz = lo; hz <= hi; hz += 0.25) {
    let re = 0
    let im = 0
    for (let i = 0; i < seg.length; i++) {
      re += seg[i]! * Math.cos((2 * Math.PI * hz * i) / rate)
      im -= seg[i]! * Math.sin((2 * Math.PI * hz * i) / rate)
    }
    const amp = (2 * Math.hypot(re, im)) / seg.length
    if (amp > best.amp) best = { hz, amp }
  }
  return best
}

const rms = (x: Float32Array, from: number, to: number) => {
  let s = 0
  for (let i = from; i < to; i++) s += x[i]! ** 2
  return Math.sqrt(s / (to - from))
}

describe('resample', () => {
  it.each([
    [22_050, 16_000],
    [44_100, 16_000],
    [48_000, 16_000],
    [8_000, 16_000],
    [44_101, 16_000], // no small ratio: positions rounded to 1/1024 sample
  ])('a 440 Hz tone at %i Hz keeps its frequency and amplitude at %i Hz', (from, to) => {
    const y = resample(tone(from, 440, 3), from, to)
    expect(y.length).toBe(Math.round(3 * to))
    const p = peak(y, to, 420, 460)
    expect(Math.abs(p.hz - 440)).toBeLessThanOrEqual(0.5)
    expect(Math.abs(p.amp - 0.5) / 0.5).toBeLessThan(0.02)
  })

  it('keeps 3 kHz, and filters out what would fold back when downsampling', () => {
    const kept = resample(tone(22_050, 3000, 3), 22_050, 16_000)
    expect(Math.abs(peak(kept, 16_000, 2990, 3010).amp - 0.5)).toBeLessThan(0.01)
    // 12 kHz cannot be represented at 16 kHz; unfiltered, it would alias to 4 kHz at full amplitude.
    const folded = resample(tone(44_100, 12_000, 2), 44_100, 16_000)
    expect(rms(folded, 1000, folded.length - 1000)).toBeLessThan(0.005)
  })

  it('keeps DC, returns the input at the same rate, refuses fractional rates', () => {
    const dc = resample(new Float32Array(22_050).fill(0.25), 22_050, 16_000)
    expect(Math.max(...dc.subarray(100, -100).map((v) => Math.abs(v - 0.25)))).toBeLessThan(1e-5)
    const x = tone(16_000, 440, 0.1)
    expect(resample(x, 16_000, 16_000)).toBe(x)
    expect(() => resample(x, 22_050.5, 16_000)).toThrow(RangeError)
  })
})

/** A WAV file of `frames` × `channels` samples written by `put`. */
function wav(
  o: { format: number; bits: number; channels: number; rate: number; frames: number; extensible?: boolean },
  put: (dv: DataView, at: number, i: number, c: number) => void,
) {
  const width = o.bits / 8
  const fmtSize = o.extensible ? 40 : 16
  const data = o.frames * o.channels * width
  const bytes = new Uint8Array(12 + 8 + fmtSize + 8 + data)
  const dv = new DataView(bytes.buffer)
  const str = (at: number, s: string) => {
    for (let i = 0; i < s.length; i++) dv.setUint8(at + i, s.charCodeAt(i))
  }
  str(0, 'RIFF')
  dv.setUint32(4, bytes.length - 8, true)
  str(8, 'WAVEfmt ')
  dv.setUint32(16, fmtSize, true)
  dv.setUint16(20, o.extensible ? 0xfffe : o.format, true)
  dv.setUint16(22, o.channels, true)
  dv.setUint32(24, o.rate, true)
  dv.setUint32(28, o.rate * o.channels * width, true)
  dv.setUint16(32, o.channels * width, true)
  dv.setUint16(34, o.bits, true)
  if (o.extensible) {
    dv.setUint16(36, 22, true)
    dv.setUint16(44, o.format, true) // sub-format GUID starts with the format code
  }
  const d = 20 + fmtSize
  str(d, 'data')
  dv.setUint32(d + 4, data, true)
  for (let i = 0; i < o.frames; i++)
    for (let c = 0; c < o.channels; c++) put(dv, d + 8 + (i * o.channels + c) * width, i, c)
  return bytes
}

describe('WAV', () => {
  const x = tone(22_050, 440, 0.5)

  it('16-bit stereo is averaged to mono', () => {
    const bytes = wav({ format: 1, bits: 16, channels: 2, rate: 22_050, frames: x.length }, (dv, at, i, c) =>
      dv.setInt16(at, Math.round((c === 0 ? x[i]! : 0.25) * 32767), true),
    )
    const { rate, samples } = parseWav(bytes)
    expect(rate).toBe(22_050)
    expect(samples.length).toBe(x.length)
    for (const i of [0, 17, 1000]) expect(samples[i]).toBeCloseTo((x[i]! + 0.25) / 2, 3)
  })

  it('32-bit float, 24-bit PCM and WAVE_FORMAT_EXTENSIBLE read the same samples', () => {
    const float = wav({ format: 3, bits: 32, channels: 1, rate: 22_050, frames: x.length }, (dv, at, i) =>
      dv.setFloat32(at, x[i]!, true),
    )
    const pcm24 = wav(
      { format: 1, bits: 24, channels: 1, rate: 22_050, frames: x.length, extensible: true },
      (dv, at, i) => {
        const v = Math.round(x[i]! * 8388607)
        dv.setUint8(at, v & 0xff)
        dv.setUint8(at + 1, (v >> 8) & 0xff)
        dv.setInt8(at + 2, v >> 16)
      },
    )
    expect(parseWav(float).samples).toEqual(x)
    const s24 = parseWav(pcm24).samples
    expect(Math.max(...s24.map((v, i) => Math.abs(v - x[i]!)))).toBeLessThan(1e-6)
    // To 16 kHz: the length scales and the tone survives.
    const y = wavTo16k(float)
    expect(y.length).toBe(8000)
    expect(Math.abs(peak(y, 16_000, 400, 480).hz - 440)).toBeLessThanOrEqual(2)
  })

  it('refuses what is not a WAV file, or a format it does not read, with InvalidTensorError', () => {
    const alaw = wav({ format: 6, bits: 8, channels: 1, rate: 8000, frames: 10 }, () => {})
    expect(() => parseWav(alaw)).toThrow(/format 6 with 8-bit/)
    expect(() => parseWav(new Uint8Array(100))).toThrow(
      expect.objectContaining({ name: 'InvalidTensorError' }),
    )
    const noData = wav({ format: 1, bits: 16, channels: 1, rate: 8000, frames: 0 }, () => {}).subarray(
      0,
      44 - 8,
    )
    expect(() => parseWav(noData)).toThrow(/no data chunk/)
  })
})

describe('PNG and JPEG', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pc-media-'))
  })
  afterAll(() => rm(dir, { recursive: true, force: true }))

  /** 8×4 RGBA: a red → blue gradient whose right half is half transparent. */
  const rgba = () => {
    const png = new PNG({ width: 8, height: 4 })
    for (let y = 0; y < 4; y++)
      for (let x = 0; x < 8; x++) png.data.set([255 - x * 30, 40, x * 30, x < 4 ? 255 : 128], (y * 8 + x) * 4)
    return png
  }

  it('PNG: RGBA, with transparency composited over white as the browser does', () => {
    const png = rgba()
    const bytes = new Uint8Array(PNG.sync.write(png))
    expect(probeImage(bytes)).toEqual({ format: 'png', width: 8, height: 4 })
    const img = decodeImage(bytes)
    expect([img.width, img.height, img.data.length]).toEqual([8, 4, 8 * 4 * 4])
    expect([...img.data.subarray(0, 4)]).toEqual([255, 40, 0, 255])
    const i = (1 * 8 + 6) * 4 // x = 6: alpha 128
    const over = (v: number) => Math.round((v * 128 + 255 * 127) / 255)
    expect([...img.data.subarray(i, i + 4)]).toEqual([over(255 - 180), over(40), over(180), 255])
  })

  it('PNG: grayscale and 16-bit images come out as 8-bit RGBA', () => {
    const png = new PNG({ width: 3, height: 2 })
    for (let i = 0; i < png.data.length; i += 4) png.data.set([200, 200, 200, 255], i)
    const gray = new Uint8Array(PNG.sync.write(png, { colorType: 0 }))
    // pngjs writes 16-bit samples from native-endian 16-bit input.
    png.data = Buffer.from(
      Uint16Array.from({ length: 3 * 2 * 4 }, (_, i) => (i % 4 === 3 ? 65535 : 200 * 257)).buffer,
    )
    const deep = new Uint8Array(PNG.sync.write(png, { colorType: 6, bitDepth: 16 }))
    expect(deep[24]).toBe(16) // IHDR bit depth
    for (const bytes of [gray, deep]) {
      const img = decodeImage(bytes)
      expect([img.width, img.height]).toEqual([3, 2])
      expect([...img.data.subarray(0, 4)]).toEqual([200, 200, 200, 255])
    }
  })

  it('JPEG: decoded to RGBA close to what was encoded', () => {
    const src = { width: 16, height: 16, data: Buffer.alloc(16 * 16 * 4) }
    for (let p = 0; p < 256; p++) src.data.set([30, 120, 220, 255], p * 4)
    const bytes = new Uint8Array(encodeJpeg(src, 95).data)
    expect(probeImage(bytes)).toEqual({ format: 'jpeg', width: 16, height: 16 })
    const img = decodeImage(bytes)
    expect(img.data.length).toBe(16 * 16 * 4)
    const px = [...img.data.subarray(8 * 64 + 32, 8 * 64 + 36)]
    for (const [c, v] of [30, 120, 220].entries()) expect(Math.abs(px[c]! - v)).toBeLessThanOrEqual(4)
    expect(px[3]).toBe(255)
  })

  /** The mean of step function `f` (one value a pixel) over [lo, hi), from its running integral. */
  const mean = (f: (i: number) => number, lo: number, hi: number) => {
    const integral = (t: number) => {
      let s = 0
      for (let i = 0; i < Math.floor(t); i++) s += f(i)
      return s + (t - Math.floor(t)) * (t > Math.floor(t) ? f(Math.floor(t)) : 0)
    }
    return (integral(hi) - integral(lo)) / (hi - lo)
  }

  it('PNG: a 5000×100 image comes out 4096×82, each pixel the mean of the area it covers', () => {
    const png = new PNG({ width: 5000, height: 100 })
    const red = (x: number) => (x * 7) % 256
    const green = (y: number) => (y * 37) % 256
    // Columns from 4900 on are transparent: white once composited, as in the browser.
    for (let y = 0; y < 100; y++)
      for (let x = 0; x < 5000; x++)
        png.data.set([red(x), green(y), 90, x < 4900 ? 255 : 0], (y * 5000 + x) * 4)
    const img = decodeImage(new Uint8Array(PNG.sync.write(png)))
    expect([img.width, img.height, img.data.length]).toEqual([MAX_SIDE, 82, 4096 * 82 * 4])
    const at = (x: number, y: number) => [...img.data.subarray((y * 4096 + x) * 4, (y * 4096 + x) * 4 + 4)]
    const rx = 5000 / 4096
    const ry = 100 / 82
    const seen = (x: number) => (x < 4900 ? red(x) : 255)
    for (const x of [0, 1, 2, 3, 1000, 2047, 3001, 4013, 4014, 4015, 4095])
      for (const y of [0, 1, 40, 41, 81]) {
        const [r, g, b, a] = at(x, y)
        expect(Math.abs(r! - mean(seen, x * rx, (x + 1) * rx)), `red at ${x},${y}`).toBeLessThanOrEqual(
          0.5001,
        )
        if (x < 4014) {
          expect(Math.abs(g! - mean(green, y * ry, (y + 1) * ry)), `green at ${x},${y}`).toBeLessThanOrEqual(
            0.5001,
          )
          expect(b).toBe(90)
        }
        expect(a).toBe(255)
      }
    expect(at(4095, 50)).toEqual([255, 255, 255, 255])
    // Averaging, not sampling: column 1 covers pixels 1.22–2.44, neither of which it could pick alone.
    expect(at(1, 0)[0]).toBe(Math.round(((2 - rx) * 7 + (2 * rx - 2) * 14) / rx))
  })

  it('shrinks the longest side, tall or wide, and leaves images within MAX_SIDE untouched', () => {
    const flat = (width: number, height: number) => ({
      width,
      height,
      data: new Uint8Array(width * height * 4).fill(200),
    })
    const tall = shrink(flat(100, 5000))
    expect([tall.width, tall.height]).toEqual([82, 4096])
    expect(tall.data.every((v, i) => v === (i % 4 === 3 ? 255 : 200))).toBe(true)
    expect([shrink(flat(9000, 1)).width, shrink(flat(9000, 1)).height]).toEqual([4096, 1])
    const edge = flat(4096, 3)
    expect(shrink(edge)).toBe(edge)
    const half = shrink(flat(8, 4), 4)
    expect([half.width, half.height]).toEqual([4, 2])
  })

  it('refuses images over the pixel limit from the header, before inflating them', () => {
    const bytes = new Uint8Array(PNG.sync.write(rgba()))
    const dv = new DataView(bytes.buffer)
    dv.setUint32(16, 50_000)
    dv.setUint32(20, 40_000) // 2000 MP claimed; the data is a few bytes
    expect(() => decodeImage(bytes)).toThrow(/2000\.0 MP\), over the 40 MP limit/)
    const small = new Uint8Array(PNG.sync.write(rgba()))
    expect(() => decodeImage(small, 16)).toThrow(expect.objectContaining({ name: 'InvalidTensorError' }))
  })

  it('files: too large, missing, not an image, or corrupt: named errors with the file name', async () => {
    const good = join(dir, 'good.png')
    await writeFile(good, PNG.sync.write(rgba()))
    expect((await readImage(good)).width).toBe(8)
    await expect(readImage(good, 10)).rejects.toMatchObject({
      name: 'InvalidTensorError',
      message: /over the 10-byte limit/,
    })
    await expect(readImage(join(dir, 'none.png'))).rejects.toMatchObject({ name: 'InvalidOptionError' })
    const text = join(dir, 'notes.png')
    await writeFile(text, 'hello, not a picture')
    await expect(readImage(text)).rejects.toMatchObject({
      name: 'InvalidTensorError',
      message: /notes\.png: not a PNG or JPEG/,
    })
    const cut = join(dir, 'cut.png')
    await writeFile(cut, PNG.sync.write(rgba()).subarray(0, 40))
    await expect(readImage(cut)).rejects.toMatchObject({
      name: 'InvalidTensorError',
      message: /cannot decode png/,
    })
  })
})
