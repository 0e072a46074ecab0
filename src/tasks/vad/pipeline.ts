/**
 * Voice activity over the swarm: 16 kHz audio is cut into chunks that run as parallel Silero jobs
 * (`silero-vad-v5-seq` loops over a chunk's frames inside one job), then the per-frame
 * probabilities are joined and segmented.
 *   const { segments } = await vad(audio16k, { submit })
 * `sequential: true` threads the recurrent state from chunk to chunk instead (exact, no parallelism).
 */
import { InvalidTensorError } from '../../shared/errors.ts'
import type { Tensor } from '../../shared/tensor.ts'
import { mapParts, type OnPart, type Submit } from '../fanout.ts'
import { type Chunk, chunkPlan, FRAME_SECONDS, frameCount, framesTensor } from './frames.ts'
import { type Segment, type SegmentOptions, speechSegments } from './segments.ts'

export const VAD_MODEL = 'silero-vad-v5-seq'

export interface VadOptions {
  submit: Submit
  model?: string
  /** Audio per job (default 30 s). */
  chunkSeconds?: number
  /** Audio run before each chunk to settle the reset state; its outputs are dropped (default 1 s). */
  warmupSeconds?: number
  /** One chunk after another, carrying the state across: results equal one pass over the whole file. */
  sequential?: boolean
  segments?: SegmentOptions
  concurrency?: number
  onPart?: OnPart
  signal?: AbortSignal
}

export interface VadResult {
  segments: Segment[]
  /** Speech probability per 32 ms frame. */
  probs: Float32Array
  frameSeconds: number
  seconds: number
  chunks: number
  workers: string[]
  ms: number
}

const zeroState = (): Tensor => ({ dtype: 'float32', dims: [2, 1, 128], data: new Float32Array(256) })

export async function vad(audio: Float32Array, o: VadOptions): Promise<VadResult> {
  const t0 = performance.now()
  const frames = frameCount(audio.length)
  const chunkFrames = Math.max(1, Math.round((o.chunkSeconds ?? 30) / FRAME_SECONDS))
  const warmup = o.sequential ? 0 : Math.round((o.warmupSeconds ?? 1) / FRAME_SECONDS)
  const plan = chunkPlan(frames, chunkFrames, warmup)
  const workers = new Set<string>()
  let state = zeroState()

  const runChunk = async (c: Chunk, _i: number, signal: AbortSignal) => {
    const inputs = { frames: framesTensor(audio, c.start, c.end), h0: o.sequential ? state : zeroState() }
    const r = await o.submit(o.model ?? VAD_MODEL, inputs, { signal })
    const probs = r.outputs.probs
    const next = r.outputs.state_out
    if (probs?.dtype !== 'float32' || probs.data.length !== c.end - c.start)
      throw new InvalidTensorError(
        `VAD job returned ${probs?.data.length ?? 0} probabilities for ${c.end - c.start} frames`,
      )
    if (o.sequential) {
      if (next?.dtype !== 'float32' || next.data.length !== 256)
        throw new InvalidTensorError('VAD job returned no state')
      state = next
    }
    if (r.worker) workers.add(r.worker)
    return { probs: (probs.data as Float32Array).subarray(c.keep - c.start), worker: r.worker }
  }
  const parts = await mapParts(plan, runChunk, {
    stage: 'vad',
    concurrency: o.sequential ? 1 : (o.concurrency ?? 4),
    ...(o.onPart ? { onPart: o.onPart } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
  })

  // Reduce: the kept frames of the chunks tile the file exactly once.
  const probs = new Float32Array(frames)
  parts.forEach((p, i) => {
    probs.set(p.probs, plan[i]!.keep)
  })
  return {
    segments: speechSegments(probs, o.segments),
    probs,
    frameSeconds: FRAME_SECONDS,
    seconds: audio.length / 16_000,
    chunks: plan.length,
    workers: [...workers],
    ms: performance.now() - t0,
  }
}
