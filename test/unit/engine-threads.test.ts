/**
 * The 'auto' thread engine (src/compute/engine.ts) over stub bridges: it calibrates a model once on
 * its first run, caches the choice per CID, re-checks it once warm, and leaves WebGPU alone.
 */
import { describe, expect, it } from 'vitest'
import type { InferenceEngine, RunResult } from '../../src/compute/bridge.ts'
import { createEngine } from '../../src/compute/engine.ts'
import type { CalibrationRecord, CalibrationStore } from '../../src/store/calibration.ts'

const CID = 'bafkreidyllbzbuwb2fdgttvsc6notidx5yr5wgl6z2qhcptapjy3pkxbja'
const x = { dtype: 'float32' as const, dims: [1], data: new Float32Array(1) }

/** Stub bridges whose run time per thread count comes from `ms(threads)`; counts runs. */
function stubs(ms: (threads: number) => number, ep: 'wasm' | 'webgpu' = 'wasm') {
  const runs = new Map<number, number>()
  const make = (threads: number): InferenceEngine => ({
    capabilities: async () => ({
      eps: [ep],
      adapter: null,
      threads,
      crossOriginIsolated: true,
      ortVersion: 'x',
    }),
    loadModel: async () => {},
    run: async (): Promise<RunResult> => {
      runs.set(threads, (runs.get(threads) ?? 0) + 1)
      return { outputs: { y: x }, ep, timing: { sessionMs: 0, runMs: ms(threads) } }
    },
    evict: async () => true,
    close: () => {},
  })
  return { make, runs }
}

function memoryStore(): CalibrationStore & { recs: Map<string, CalibrationRecord> } {
  const recs = new Map<string, CalibrationRecord>()
  return { recs, get: async (cid) => recs.get(cid), put: async (r) => void recs.set(r.cid, r) }
}

describe("createEngine({ threads: 'auto' })", () => {
  it('calibrates on the first run, picks the faster setting and caches it per CID', async () => {
    const s = stubs((t) => (t === 2 ? 5 : 10))
    const calibration = memoryStore()
    const engine = createEngine({ threadsMax: 2, makeBridge: s.make, calibration })
    await engine.loadModel(CID, new Uint8Array())
    await engine.run({ cid: CID, inputs: { x } })
    expect(calibration.recs.get(CID)?.threads).toBe(2)
    const before = s.runs.get(1)
    await engine.run({ cid: CID, inputs: { x } })
    expect(s.runs.get(1)).toBe(before) // decided: no more 1-thread runs

    // A new engine (a reload) reads the cached choice instead of calibrating again.
    const s2 = stubs(() => 1)
    const again = createEngine({ threadsMax: 2, makeBridge: s2.make, calibration })
    await again.run({ cid: CID, inputs: { x } })
    expect(s2.runs.get(1) ?? 0).toBe(0)
    expect(s2.runs.get(2)).toBe(1)
  })

  it('keeps 1 thread unless N threads win by the margin', async () => {
    const s = stubs((t) => (t === 2 ? 9.9 : 10))
    const calibration = memoryStore()
    const engine = createEngine({ threadsMax: 2, makeBridge: s.make, calibration })
    await engine.run({ cid: CID, inputs: { x } })
    expect(calibration.recs.get(CID)?.threads).toBe(1)
  })

  it('re-checks once after `recheckAfter` runs and follows a changed winner', async () => {
    let fast = 1
    const s = stubs((t) => (t === fast ? 5 : 10))
    const calibration = memoryStore()
    const engine = createEngine({ threadsMax: 2, makeBridge: s.make, calibration, recheckAfter: 3 })
    await engine.run({ cid: CID, inputs: { x } })
    expect(calibration.recs.get(CID)).toMatchObject({ threads: 1, checks: 1 })
    fast = 2
    for (let i = 0; i < 3; i++) await engine.run({ cid: CID, inputs: { x } })
    expect(calibration.recs.get(CID)).toMatchObject({ threads: 2, checks: 2 })
  })

  it('does not calibrate threads when the run used WebGPU', async () => {
    const s = stubs(() => 1, 'webgpu')
    const calibration = memoryStore()
    const engine = createEngine({ threadsMax: 2, makeBridge: s.make, calibration })
    const r = await engine.run({ cid: CID, inputs: { x } })
    expect(r.ep).toBe('webgpu')
    expect(s.runs.get(1) ?? 0).toBe(0)
    expect(calibration.recs.size).toBe(0)
  })

  it('a fixed thread count is one bridge, no calibration', async () => {
    const s = stubs(() => 1)
    const engine = createEngine({ threads: 1, threadsMax: 2, makeBridge: s.make })
    await engine.run({ cid: CID, inputs: { x } })
    expect([...s.runs.keys()]).toEqual([1])
  })
})
