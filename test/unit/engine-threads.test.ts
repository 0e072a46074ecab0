/**
 * The 'auto' thread engine (src/compute/engine.ts) over stub bridges: it calibrates a model once on
 * its first run, caches the choice per CID, re-checks it after 8, 64, 512… runs, and leaves WebGPU alone.
 */
import { describe, expect, it } from 'vitest'
import type { InferenceEngine, RunResult } from '../../src/compute/bridge.ts'
import { type Calibrated, createEngine } from '../../src/compute/engine.ts'
import { InvalidTensorError } from '../../src/shared/errors.ts'
import type { CalibrationRecord, CalibrationStore } from '../../src/store/calibration.ts'

const CID = 'bafkreidyllbzbuwb2fdgttvsc6notidx5yr5wgl6z2qhcptapjy3pkxbja'
const x = { dtype: 'float32' as const, dims: [1], data: new Float32Array(1) }

/** Stub bridges whose run time per thread count comes from `ms(threads)`; counts runs, in order. */
function stubs(ms: (threads: number) => number, ep: 'wasm' | 'webgpu' = 'wasm') {
  const runs = new Map<number, number>()
  const order: number[] = []
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
      order.push(threads)
      return { outputs: { y: x }, ep, timing: { sessionMs: 0, runMs: ms(threads) } }
    },
    evict: async () => true,
    close: () => {},
  })
  return { make, runs, order }
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

  it('alternates which setting goes first, after one warm-up run on each', async () => {
    const s = stubs((t) => (t === 2 ? 5 : 10))
    const engine = createEngine({ threadsMax: 2, makeBridge: s.make, minMs: 0 })
    await engine.run({ cid: CID, inputs: { x } })
    // Warm-up N, 1; then pairs 1,N / N,1 / … until settled (skip 1 + minPairs 4).
    expect(s.order).toEqual([2, 1, 1, 2, 2, 1, 1, 2, 2, 1, 1, 2])
  })

  it('a clear winner stops once its runs reach minMs; a near-tie measures up to maxMs, then keeps 1', async () => {
    const clear = stubs((t) => (t === 2 ? 50 : 100))
    const seen: Calibrated[] = []
    const onCalibrated = (c: Calibrated) => void seen.push(c)
    const opts = { threadsMax: 2, minMs: 1000, maxMs: 3000, onCalibrated }
    await createEngine({ ...opts, makeBridge: clear.make }).run({ cid: CID, inputs: { x } })
    expect(seen[0]).toMatchObject({ threads: 2, settled: true })
    expect(seen[0]!.timed.length).toBe(7) // 7 pairs × 150 ms reach 1000 ms

    let i = 0
    const tie = stubs((t) => (t === 2 ? (i++ % 2 ? 96 : 99) : 100)) // N 2.5% faster: within the margin
    await createEngine({ ...opts, makeBridge: tie.make }).run({ cid: CID, inputs: { x } })
    expect(seen[1]).toMatchObject({ threads: 1, settled: false })
    expect(seen[1]!.timed.length).toBe(16) // 16 pairs × ~198 ms pass 3000 ms

    const cheap = stubs((t) => (t === 2 ? 0.5 : 1)) // a 1 ms model: bounded by maxPairs, not time
    await createEngine({ ...opts, makeBridge: cheap.make, maxPairs: 24 }).run({ cid: CID, inputs: { x } })
    expect(seen[2]!.timed.length).toBe(24)

    // A 1.5 ms model whose 2 threads win 6 runs in 10 (bimodal, as measured): past maxPairs it
    // keeps pairing, since its runs are cheap, until a sign test settles on N.
    let k = 0
    const bimodal = stubs((t) => (t === 1 ? 1.5 : [0.9, 1.6, 0.9, 0.9, 1.6][k++ % 5]!))
    await createEngine({ ...opts, makeBridge: bimodal.make, maxPairs: 24 }).run({ cid: CID, inputs: { x } })
    expect(seen[3]).toMatchObject({ threads: 2, settled: true })
    expect(seen[3]!.timed.length).toBeGreaterThan(24)
    expect(seen[3]!.timed.length).toBeLessThan(200)
  })

  it('re-checks after `recheckAfter` runs, then 8x as many after each, following a changed winner', async () => {
    let fast = 1
    const s = stubs((t) => (t === fast ? 5 : 10))
    const calibration = memoryStore()
    const engine = createEngine({ threadsMax: 2, makeBridge: s.make, calibration, recheckAfter: 3 })
    await engine.run({ cid: CID, inputs: { x } })
    expect(calibration.recs.get(CID)).toMatchObject({ threads: 1, checks: 1 })
    fast = 2
    for (let i = 0; i < 3; i++) await engine.run({ cid: CID, inputs: { x } })
    expect(calibration.recs.get(CID)).toMatchObject({ threads: 2, checks: 2 })
    // e.g. the 2-thread pool slowed down: the next re-check, 24 runs later, goes back to 1 thread
    fast = 1
    for (let i = 0; i < 23; i++) await engine.run({ cid: CID, inputs: { x } })
    expect(calibration.recs.get(CID)).toMatchObject({ threads: 2, checks: 2 })
    const before = s.runs.get(1)
    await engine.run({ cid: CID, inputs: { x } })
    expect(calibration.recs.get(CID)).toMatchObject({ threads: 1, checks: 3 })
    expect(s.runs.get(1)).toBeGreaterThan(before!)
  })

  it('a re-check that does not settle pools its pairs with the first calibration', async () => {
    let k = 0
    let noisy = false
    // N wins 4 of 5 at first (settled); then 2 of 5 (leans 1, unsettled): pooled, 1 thread.
    const first = [60, 60, 60, 120, 60]
    const later = [60, 120, 110, 60, 120]
    const s = stubs((t) => (t === 1 ? 100 : (noisy ? later : first)[k++ % 5]!))
    const calibration = memoryStore()
    const engine = createEngine({ threadsMax: 2, makeBridge: s.make, calibration, recheckAfter: 2 })
    await engine.run({ cid: CID, inputs: { x } })
    expect(calibration.recs.get(CID)).toMatchObject({ threads: 2, checks: 1 })
    noisy = true
    k = 0
    for (let i = 0; i < 2; i++) await engine.run({ cid: CID, inputs: { x } })
    expect(calibration.recs.get(CID)).toMatchObject({ threads: 1, checks: 2 })
  })

  it('after a reload, the stored count of checks sets when the next re-check comes', async () => {
    const s = stubs((t) => (t === 2 ? 5 : 10))
    const calibration = memoryStore()
    await calibration.put({ v: 1, cid: CID, threads: 2, maxThreads: 2, medianMs: {}, checks: 2, at: 0 })
    const engine = createEngine({ threadsMax: 2, makeBridge: s.make, calibration, recheckAfter: 2 })
    for (let i = 0; i < 15; i++) await engine.run({ cid: CID, inputs: { x } })
    expect(s.runs.get(1) ?? 0).toBe(0) // not after 2 runs: this choice was checked twice already
    await engine.run({ cid: CID, inputs: { x } })
    expect(calibration.recs.get(CID)).toMatchObject({ threads: 2, checks: 3 })
  })

  it('after a reload, a re-check that does not settle keeps the current choice', async () => {
    let k = 0
    let noisy = false
    // Clear N win at first; then N wins 3 of every 5 pairs: leans N but never settles.
    const s = stubs((t) => (t === 1 ? 100 : noisy ? [60, 120, 60, 110, 70][k++ % 5]! : 50))
    const calibration = memoryStore()
    const engine = createEngine({ threadsMax: 2, makeBridge: s.make, calibration, recheckAfter: 2 })
    await engine.run({ cid: CID, inputs: { x } })
    expect(calibration.recs.get(CID)).toMatchObject({ threads: 2, checks: 1 })
    noisy = true
    const reloaded = createEngine({ threadsMax: 2, makeBridge: s.make, calibration, recheckAfter: 2 })
    for (let i = 0; i < 2; i++) await reloaded.run({ cid: CID, inputs: { x } })
    expect(calibration.recs.get(CID)).toMatchObject({ threads: 2, checks: 2 })
  })

  it('creates both sessions at once when WebGPU cannot answer the job', async () => {
    let active = 0
    let most = 0
    const s = stubs((t) => (t === 2 ? 5 : 10))
    const engine = createEngine({
      threadsMax: 2,
      makeBridge: (t) => {
        const eng = s.make(t)
        return {
          ...eng,
          run: async (p) => {
            most = Math.max(most, ++active)
            await new Promise((r) => setTimeout(r, 1))
            active--
            return eng.run(p)
          },
        }
      },
    })
    await engine.run({ cid: CID, inputs: { x } })
    expect(most).toBe(2) // the warm-ups overlapped; the timed pairs never do
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

describe('errors stay with their own job', () => {
  /** Stubs whose runs take 1 ms and refuse a malformed input (dims [2]) with an error naming its job. */
  function strict(ms: (threads: number) => number) {
    const s = stubs(ms)
    const make = (threads: number): InferenceEngine => {
      const eng = s.make(threads)
      return {
        ...eng,
        run: async (p) => {
          await new Promise((r) => setTimeout(r, 1))
          const t = p.inputs.x!
          if (t.dims[0] !== 1)
            throw new InvalidTensorError(`job ${t.data[0]}: ${t.data.length} values for dims [1]`)
          return eng.run(p)
        },
      }
    }
    return { ...s, make }
  }
  const job = (id: number, bad: boolean) => ({
    cid: CID,
    inputs: {
      x: { dtype: 'float32' as const, dims: [bad ? 2 : 1], data: new Float32Array(bad ? 2 : 1).fill(id) },
    },
  })
  const outcome = (p: Promise<unknown>) =>
    p.then(
      () => 'ok',
      (e: Error) => `${e.name}: ${e.message}`,
    )

  it('concurrent good and malformed jobs on a fresh engine: good ones run, bad ones get their own error', async () => {
    const s = strict((t) => (t === 2 ? 5 : 10))
    const calibration = memoryStore()
    const seen: Calibrated[] = []
    const engine = createEngine({
      threadsMax: 2,
      makeBridge: s.make,
      calibration,
      onCalibrated: (c) => seen.push(c),
    })
    const bad = (i: number) => i % 3 === 0 // jobs 0, 3, 6, …: the first job, the calibrating one, is bad
    const results = await Promise.all(
      Array.from({ length: 24 }, (_, i) => outcome(engine.run(job(i, bad(i))))),
    )
    for (const [i, r] of results.entries())
      expect(r).toBe(bad(i) ? `InvalidTensorError: job ${i}: 2 values for dims [1]` : 'ok')
    expect(seen).toHaveLength(1) // one calibration, on a good job's input, for all the waiting jobs
    expect(calibration.recs.get(CID)).toMatchObject({ threads: 2, checks: 1 })
  })

  it('a malformed job on a fresh engine with a stored choice fails alone', async () => {
    const s = strict(() => 1)
    const calibration = memoryStore()
    await calibration.put({ v: 1, cid: CID, threads: 2, maxThreads: 2, medianMs: {}, checks: 1, at: 0 })
    const engine = createEngine({ threadsMax: 2, makeBridge: s.make, calibration })
    const results = await Promise.all([0, 1, 2].map((i) => outcome(engine.run(job(i, i === 0)))))
    expect(results).toEqual(['InvalidTensorError: job 0: 2 values for dims [1]', 'ok', 'ok'])
    expect(s.runs.get(1) ?? 0).toBe(0) // no calibration: the stored choice stands
  })

  it('a re-check on a malformed job keeps the choice; the next good job re-checks', async () => {
    const s = strict((t) => (t === 2 ? 5 : 10))
    const calibration = memoryStore()
    const engine = createEngine({ threadsMax: 2, makeBridge: s.make, calibration, recheckAfter: 2 })
    await engine.run(job(0, false))
    expect(calibration.recs.get(CID)).toMatchObject({ threads: 2, checks: 1 })
    await engine.run(job(1, false))
    // The 2nd run after the calibration is due to re-check: a bad one, with a good one waiting on it.
    const [bad, good] = await Promise.all([
      outcome(engine.run(job(2, true))),
      outcome(engine.run(job(3, false))),
    ])
    expect(bad).toBe('InvalidTensorError: job 2: 2 values for dims [1]')
    expect(good).toBe('ok')
    expect(calibration.recs.get(CID)).toMatchObject({ threads: 2, checks: 1 })
    await engine.run(job(4, false))
    expect(calibration.recs.get(CID)).toMatchObject({ threads: 2, checks: 2 }) // job 4 re-checked
  })

  it('concurrent first runs read the stored choice once and calibrate once', async () => {
    const s = strict((t) => (t === 2 ? 5 : 10))
    const calibration = memoryStore()
    let reads = 0
    const counted = {
      ...calibration,
      get: (cid: string) => {
        reads++
        return calibration.get(cid)
      },
    }
    const seen: Calibrated[] = []
    const engine = createEngine({
      threadsMax: 2,
      makeBridge: s.make,
      calibration: counted,
      onCalibrated: (c) => seen.push(c),
    })
    await Promise.all(Array.from({ length: 4 }, (_, i) => engine.run(job(i, false))))
    expect([reads, seen.length]).toEqual([1, 1])
  })
})
