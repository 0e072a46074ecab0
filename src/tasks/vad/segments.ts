/** Speech segments from per-frame speech probabilities, as silero-vad's get_speech_timestamps does. */
import { FRAME_SECONDS } from './frames.ts'

export interface SegmentOptions {
  /** A frame at or above this starts speech (default 0.5). */
  threshold?: number
  /** Speech ends after frames below this (default threshold - 0.15 = 0.35). */
  negThreshold?: number
  /** Shorter speech is dropped (default 250 ms). */
  minSpeechMs?: number
  /** Silence must last this long to end a segment (default 100 ms). */
  minSilenceMs?: number
  /** Each segment grows by this much on both sides, without overlapping its neighbours (default 30 ms). */
  padMs?: number
  frameSeconds?: number
}

export interface Segment {
  /** Seconds from the start of the audio. */
  start: number
  end: number
}

export function speechSegments(probs: ArrayLike<number>, o: SegmentOptions = {}): Segment[] {
  const threshold = o.threshold ?? 0.5
  const neg = o.negThreshold ?? threshold - 0.15
  const sec = o.frameSeconds ?? FRAME_SECONDS
  const minSpeech = (o.minSpeechMs ?? 250) / 1000 / sec
  const minSilence = (o.minSilenceMs ?? 100) / 1000 / sec
  const pad = (o.padMs ?? 30) / 1000
  const frames: [number, number][] = []
  let start = -1
  let silenceFrom = -1
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i]!
    if (p >= threshold) {
      silenceFrom = -1
      if (start < 0) start = i
    } else if (p < neg && start >= 0) {
      if (silenceFrom < 0) silenceFrom = i
      if (i + 1 - silenceFrom >= minSilence) {
        if (silenceFrom - start >= minSpeech) frames.push([start, silenceFrom])
        start = -1
        silenceFrom = -1
      }
    }
  }
  if (start >= 0 && probs.length - start >= minSpeech) frames.push([start, probs.length])
  const total = probs.length * sec
  return frames.map(([s, e], k) => {
    const prevEnd = k > 0 ? frames[k - 1]![1] * sec : 0
    const nextStart = k + 1 < frames.length ? frames[k + 1]![0] * sec : total
    return {
      start: Math.max(s * sec - pad, (prevEnd + s * sec) / 2, 0),
      end: Math.min(e * sec + pad, (e * sec + nextStart) / 2, total),
    }
  })
}
