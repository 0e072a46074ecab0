/**
 * WAV files without Web Audio (Node, tests): PCM 8/16/24/32-bit and 32-bit float, any channel count
 * mixed to mono, then to 16 kHz for VAD.
 *   const audio = wavTo16k(new Uint8Array(await readFile('talk.wav')))
 */
import { InvalidTensorError } from '../../shared/errors.ts'
import { SAMPLE_RATE } from './frames.ts'
import { resample } from './resample.ts'

export interface Pcm {
  rate: number
  /** Mono, in [-1, 1]. */
  samples: Float32Array
}

/** WAVE_FORMAT_EXTENSIBLE: the real format code is the sub-format GUID's first two bytes. */
const EXTENSIBLE = 0xfffe

type Read = (dv: DataView, o: number) => number
/** By `format/bits`: format 1 is integer PCM, 3 IEEE float. */
const READERS: Record<string, Read> = {
  '1/8': (dv, o) => (dv.getUint8(o) - 128) / 128,
  '1/16': (dv, o) => dv.getInt16(o, true) / 32768,
  '1/24': (dv, o) => (dv.getUint8(o) | (dv.getUint8(o + 1) << 8) | (dv.getInt8(o + 2) << 16)) / 8388608,
  '1/32': (dv, o) => dv.getInt32(o, true) / 2147483648,
  '3/32': (dv, o) => dv.getFloat32(o, true),
}

/** The file's samples mixed to mono, at the file's rate. */
export function parseWav(bytes: Uint8Array): Pcm {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const tag = (o: number) => String.fromCharCode(...bytes.subarray(o, o + 4))
  if (bytes.length < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE')
    throw new InvalidTensorError('not a WAV file (RIFF/WAVE)')
  let fmt: { read: Read; channels: number; rate: number; width: number } | undefined
  for (let o = 12; o + 8 <= bytes.length; ) {
    const size = dv.getUint32(o + 4, true)
    if (tag(o) === 'fmt ') {
      if (size < 16 || o + 24 > bytes.length) throw new InvalidTensorError('WAV fmt chunk is truncated')
      let format = dv.getUint16(o + 8, true)
      if (format === EXTENSIBLE && size >= 40 && o + 34 <= bytes.length) format = dv.getUint16(o + 32, true)
      const channels = dv.getUint16(o + 10, true)
      const rate = dv.getUint32(o + 12, true)
      const bits = dv.getUint16(o + 22, true)
      const read = READERS[`${format}/${bits}`]
      if (!read)
        throw new InvalidTensorError(
          `WAV format ${format} with ${bits}-bit samples is not supported: use PCM or 32-bit float`,
        )
      if (channels < 1 || rate < 1000 || rate > 768_000)
        throw new InvalidTensorError(`WAV has ${channels} channels at ${rate} Hz`)
      fmt = { read, channels, rate, width: bits / 8 }
    } else if (tag(o) === 'data') {
      if (!fmt) throw new InvalidTensorError('WAV data comes before its fmt chunk')
      const { read, channels, rate, width } = fmt
      const n = Math.floor(Math.min(size, bytes.length - o - 8) / width / channels)
      // Mixed as it is read (the average, as toMono does): no per-channel copies of a long file.
      const samples = new Float32Array(n)
      for (let i = 0, p = o + 8; i < n; i++) {
        let sum = 0
        for (let c = 0; c < channels; c++, p += width) sum += read(dv, p)
        samples[i] = sum / channels
      }
      return { rate, samples }
    }
    o += 8 + size + (size % 2)
  }
  throw new InvalidTensorError('WAV has no data chunk')
}

/** WAV bytes as the 16 kHz mono samples Silero takes. */
export function wavTo16k(bytes: Uint8Array): Float32Array {
  const { rate, samples } = parseWav(bytes)
  return resample(samples, rate, SAMPLE_RATE)
}
