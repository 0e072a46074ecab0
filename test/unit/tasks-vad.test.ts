/**
 * Voice activity in Node: framing, chunk plans, segmentation, and the looped Silero model against
 * the original run frame by frame on onnxruntime-node, with espeak-ng speech.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import * as ort from 'onnxruntime-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sileroSeqBytes } from '../../scripts/silero-seq.ts'
import type { Submit } from '../../src/tasks/fanout.ts'
import { chunkPlan, framesTensor } from '../../src/tasks/vad/frames.ts'
import { vad } from '../../src/tasks/vad/pipeline.ts'
import { speechSegments } from '../../src/tasks/vad/segments.ts'
import { compose, type Pcm, speak } from '../helpers/espeak.ts'

const SILERO = resolve(import.meta.dirname, '../../node_modules/@ricky0123/vad-web/dist/silero_vad_v5.onnx')

/** Linear resampling to 16 kHz, enough for a test signal. */
function to16k({ rate, samples }: Pcm): Float32Array {
  const out = new Float32Array(Math.floor((samples.length * 16000) / rate))
  for (let i = 0; i < out.length; i++) {
    const f = (i * rate) / 16000
    const k = Math.floor(f)
    out[i] = samples[k]! * (1 - (f - k)) + (samples[k + 1] ?? 0) * (f - k)
  }
  return out
}

describe('framing and segmentation', () => {
  it('chunks tile the frames once; each starts with up to `warmup` earlier frames', () => {
    const plan = chunkPlan(100, 30, 5)
    expect(plan).toEqual([
      { start: 0, keep: 0, end: 30 },
      { start: 25, keep: 30, end: 60 },
      { start: 55, keep: 60, end: 90 },
      { start: 85, keep: 90, end: 100 },
    ])
  })

  it('each frame is 64 samples of context then 512 new ones, zero-padded at the ends', () => {
    const audio = Float32Array.from({ length: 1100 }, (_, i) => i + 1)
    const t = framesTensor(audio, 0, 3)
    const x = t.data as Float32Array
    expect(t.dims).toEqual([3, 576])
    expect(x[63]).toBe(0) // no context before the start
    expect(x[64]).toBe(1)
    expect(x[576]).toBe(512 - 64 + 1) // frame 1 context = last 64 samples of frame 0
    expect(x[576 + 64]).toBe(513)
    expect(x[2 * 576 + 64 + 1100 - 1024 - 1]).toBe(1100)
    expect(x[2 * 576 + 64 + 1100 - 1024]).toBe(0)
  })

  it('segments need 0.5 to start, fall under 0.35 for 100 ms to end, and last 250 ms', () => {
    const f = 0.032
    const probs = [
      ...Array(10).fill(0.1),
      ...Array(20).fill(0.9), // 640 ms speech
      0.4, // between thresholds: still speech
      ...Array(2).fill(0.1), // 64 ms dip: too short to end it
      ...Array(10).fill(0.8),
      ...Array(20).fill(0.05),
      ...Array(5).fill(0.95), // 160 ms: too short
      ...Array(20).fill(0.05),
    ]
    const segs = speechSegments(probs, { padMs: 0 })
    expect(segs).toHaveLength(1)
    expect(segs[0]!.start).toBeCloseTo(10 * f)
    expect(segs[0]!.end).toBeCloseTo(43 * f)
    expect(speechSegments(probs, { padMs: 30 })[0]!.start).toBeCloseTo(10 * f - 0.03)
  })
})

describe('Silero v5 looped over frames', () => {
  let original: ort.InferenceSession
  let looped: ort.InferenceSession
  let audio: Float32Array
  const spans: [number, number][] = []

  beforeAll(async () => {
    const bytes = new Uint8Array(readFileSync(SILERO))
    original = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 })
    looped = await ort.InferenceSession.create(sileroSeqBytes(bytes), { intraOpNumThreads: 1 })
    const clip = speak('Voice activity detection on peers.')
    const at = [2, 9]
    audio = to16k(
      compose(
        clip.rate,
        14,
        at.map((t) => ({ at: t, pcm: clip })),
      ),
    )
    for (const t of at) spans.push([t, t + clip.samples.length / clip.rate])
  })
  afterAll(async () => {
    await original?.release()
    await looped?.release()
  })

  const submit: Submit = async (_model, inputs) => {
    const feeds = Object.fromEntries(
      Object.entries(inputs).map(([k, t]) => [k, new ort.Tensor('float32', t.data as Float32Array, t.dims)]),
    )
    const out = await looped.run(feeds)
    return {
      outputs: Object.fromEntries(
        Object.entries(out).map(([k, v]) => [
          k,
          { dtype: 'float32' as const, dims: [...v.dims], data: v.data as Float32Array },
        ]),
      ),
    }
  }

  it('gives bit-identical probabilities and state to the original run frame by frame', async () => {
    const frames = 200
    const x = framesTensor(audio, 40, 40 + frames)
    let state: ort.Tensor = new ort.Tensor('float32', new Float32Array(256), [2, 1, 128])
    const sr = new ort.Tensor('int64', BigInt64Array.of(16000n), [])
    const ref: number[] = []
    for (let f = 0; f < frames; f++) {
      const input = new ort.Tensor(
        'float32',
        (x.data as Float32Array).slice(f * 576, (f + 1) * 576),
        [1, 576],
      )
      const out = await original.run({ input, state, sr })
      ref.push((out.output!.data as Float32Array)[0]!)
      state = out.stateN!
    }
    const h0 = new ort.Tensor('float32', new Float32Array(256), [2, 1, 128])
    const out = await looped.run({ frames: new ort.Tensor('float32', x.data as Float32Array, x.dims), h0 })
    expect(Array.from(out.probs!.data as Float32Array)).toEqual(Array.from(Float32Array.from(ref)))
    expect(out.state_out!.data).toEqual(state.data)
  })

  it('parallel chunks find the same speech as one pass; sequential chunks equal it exactly', async () => {
    const whole = await vad(audio, { submit, chunkSeconds: 60 })
    const sequential = await vad(audio, { submit, chunkSeconds: 3, sequential: true })
    const parallel = await vad(audio, { submit, chunkSeconds: 3 })
    expect(parallel.chunks).toBe(5)
    expect(sequential.probs).toEqual(whole.probs)
    // Pauses between words may split a clip; every segment is inside a clip and every clip is found.
    for (const [s, e] of spans) expect(whole.segments.some((g) => g.start < e && g.end > s)).toBe(true)
    for (const g of whole.segments)
      expect(spans.some(([s, e]) => g.start > s - 0.3 && g.end < e + 0.3)).toBe(true)
    // A reset state changes some frames' probabilities (it can merge or split a pause between words),
    // so compare which frames are speech: they agree on nearly all of them.
    const mask = (segs: { start: number; end: number }[]) =>
      Array.from(whole.probs, (_, i) => segs.some((g) => g.start <= i * 0.032 && i * 0.032 < g.end))
    const [a, b] = [mask(whole.segments), mask(parallel.segments)]
    const differ = a.filter((v, i) => v !== b[i]).length
    console.log(
      `VAD chunks: ${differ} of ${a.length} frames differ; max |Δp| ${Math.max(...whole.probs.map((p, i) => Math.abs(p - parallel.probs[i]!))).toFixed(3)}`,
    )
    expect(differ / a.length).toBeLessThan(0.03)
    for (const [s, e] of spans) expect(parallel.segments.some((g) => g.start < e && g.end > s)).toBe(true)
  })
})
