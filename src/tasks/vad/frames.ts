/**
 * Framing 16 kHz audio for Silero v5 and splitting it into chunks that run as separate jobs.
 * Each chunk restarts Silero's recurrent state, so it begins with `warmup` frames of the audio
 * before it, whose outputs are dropped: the state has settled by the frames the chunk reports.
 */
import type { Tensor } from '../../shared/tensor.ts'

export const SAMPLE_RATE = 16_000
export const FRAME = 512
export const CONTEXT = 64
export const FRAME_SECONDS = FRAME / SAMPLE_RATE

export interface Chunk {
  /** First frame run (warm-up included) and first frame reported. */
  start: number
  keep: number
  /** One past the last frame. */
  end: number
}

export const frameCount = (samples: number) => Math.ceil(samples / FRAME)

/** Chunks of `chunkFrames` reported frames, each preceded by up to `warmupFrames` frames. */
export function chunkPlan(frames: number, chunkFrames: number, warmupFrames: number): Chunk[] {
  if (!(chunkFrames >= 1)) throw new RangeError('chunkFrames must be at least 1')
  const chunks: Chunk[] = []
  for (let keep = 0; keep < frames; keep += chunkFrames) {
    chunks.push({ start: Math.max(0, keep - warmupFrames), keep, end: Math.min(frames, keep + chunkFrames) })
  }
  return chunks
}

/** Frames [start, end) as Silero v5 windows: 64 samples of context, then 512 new ones (zeros past the ends). */
export function framesTensor(audio: Float32Array, start: number, end: number): Tensor {
  const width = CONTEXT + FRAME
  const data = new Float32Array((end - start) * width)
  for (let f = start; f < end; f++) {
    const from = f * FRAME - CONTEXT
    const o = (f - start) * width
    const lo = Math.max(0, from)
    const hi = Math.min(audio.length, from + width)
    if (hi > lo) data.set(audio.subarray(lo, hi), o + (lo - from))
  }
  return { dtype: 'float32', dims: [end - start, width], data }
}

/** Mixes channels to mono by averaging. */
export function toMono(channels: Float32Array[]): Float32Array {
  if (channels.length === 1) return channels[0]!
  const out = new Float32Array(channels[0]?.length ?? 0)
  for (const ch of channels) for (let i = 0; i < out.length; i++) out[i]! += ch[i]! / channels.length
  return out
}
