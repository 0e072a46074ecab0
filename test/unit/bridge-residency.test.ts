/**
 * One owner of loaded models (src/compute/residency.ts) over stub workers: a restarted worker gets
 * back exactly the resident models, an unload reaches every worker of every engine, and the layers
 * above the bridge (auto pool, switch, guarded view, compute service) keep no list of their own.
 */
import { describe, expect, it } from 'vitest'
import { createInferenceBridge } from '../../src/compute/bridge.ts'
import { createComputeService } from '../../src/compute/compute-service.ts'
import { createEngine } from '../../src/compute/engine.ts'
import { createResidency } from '../../src/compute/residency.ts'
import { AbortError, UnknownModelError } from '../../src/shared/errors.ts'

import { exposeAsWorker, outcome } from '../helpers/stub-worker.ts'

const A = 'bafkreidyllbzbuwb2fdgttvsc6notidx5yr5wgl6z2qhcptapjy3pkxbja'
const B = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
const x = { dtype: 'float32' as const, dims: [1], data: new Float32Array(1) }
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const short = (cid: string) => cid.slice(-4)

interface StubWorker {
  log: string[]
  models: Set<string>
  terminated: boolean
}

/**
 * Workers that hold models as the real one does (a run of a model not sent answers UnknownModelError)
 * and log loads, evicts and runs; a run takes `runMs` and says it started (no stop flag).
 */
function stubWorkers(runMs = 1) {
  const made: StubWorker[] = []
  const createWorker = () => {
    const w: StubWorker = { log: [], models: new Set(), terminated: false }
    made.push(w)
    const caps = { eps: ['wasm'], adapter: null, threads: 1, crossOriginIsolated: false, ortVersion: 'x' }
    return exposeAsWorker(
      (post) => ({
        init: async () => caps,
        capabilities: async () => caps,
        warm: async () => void w.log.push('warm'),
        loadModel: async (cid: string) => {
          w.log.push(`load ${short(cid)}`)
          w.models.add(cid)
        },
        prepare: async (cid: string) => void w.log.push(`prepare ${short(cid)}`),
        run: async (req: { runId: string; cid: string }) => {
          if (!w.models.has(req.cid)) throw new UnknownModelError(`model ${req.cid} is not loaded`)
          post({ runStarted: req.runId })
          w.log.push(`run ${short(req.cid)}`)
          await sleep(runMs)
          post({ runEnded: req.runId })
          return { outputs: { y: x }, ep: 'wasm', timing: { sessionMs: 0, runMs: 10 } }
        },
        cancel: async () => true,
        evict: async (cid: string) => {
          w.log.push(`evict ${short(cid)}`)
          return w.models.delete(cid)
        },
      }),
      () => {
        w.terminated = true
      },
    )
  }
  return { made, createWorker }
}

const bytes = (n = 4) => new Uint8Array(n)

describe('residency', () => {
  it('keeps bytes without a source, reads the source with one, and forgets on drop', async () => {
    const own = createResidency()
    const b = bytes(3)
    own.add(A, b)
    expect(await own.bytes(A)).toBe(b)
    expect(own.resident(A)).toEqual({ bytes: 3 })
    expect(await own.drop(A)).toBe(true)
    expect([await own.bytes(A), own.resident(A), await own.drop(A)]).toEqual([undefined, undefined, false])

    const fromStore = bytes(5)
    const sourced = createResidency({ source: async () => fromStore })
    sourced.add(B, bytes(5))
    expect(await sourced.bytes(B)).toBe(fromStore)
    expect(await sourced.bytes(A)).toBeUndefined() // not resident: the source is not asked
  })
})

describe('inference bridge: the resident models', () => {
  it('a worker restarted when idle gets back exactly the resident models', async () => {
    const s = stubWorkers()
    const bridge = createInferenceBridge({ createWorker: s.createWorker, idleTimeoutMs: 20 })
    await bridge.loadModel(A, bytes())
    await bridge.loadModel(B, bytes())
    expect(await bridge.evict(B)).toBe(true)
    expect(s.made[0]!.log).toEqual(['load xbja', 'load 52zy', 'evict 52zy'])
    await sleep(60) // idle: the worker stops
    expect(s.made[0]!.terminated).toBe(true)
    expect((await bridge.run({ cid: A, inputs: { x } })).ep).toBe('wasm')
    expect(await outcome(bridge.run({ cid: B, inputs: { x } }))).toBe(UnknownModelError.NAME)
    expect(s.made[1]!.log).toEqual(['load xbja', 'run xbja']) // B is not re-sent
    bridge.close()
  })

  it('a model dropped while it loads does not come back', async () => {
    const s = stubWorkers()
    const bridge = createInferenceBridge({ createWorker: s.createWorker, idleTimeoutMs: 0 })
    await bridge.loadModel(B, bytes()) // the worker is up
    const load = bridge.loadModel(A, bytes())
    const drop = bridge.evict(A) // the model is deleted while the worker still loads it
    await Promise.all([load, drop])
    expect(bridge.resident?.(A)).toBeUndefined()
    expect(s.made[0]!.models.has(A)).toBe(false)
    expect(await outcome(bridge.run({ cid: A, inputs: { x } }))).toBe(UnknownModelError.NAME)
    bridge.close()
  })

  it('a worker terminated mid-run is warmed with the resident models it ran last, not an evicted one', async () => {
    const s = stubWorkers(300)
    const bridge = createInferenceBridge({ createWorker: s.createWorker, idleTimeoutMs: 0 })
    await bridge.loadModel(A, bytes())
    await bridge.loadModel(B, bytes())
    expect(bridge.sessions?.()).toEqual([])
    await bridge.run({ cid: B, inputs: { x } })
    expect(bridge.sessions?.()).toEqual([B])
    await bridge.evict(B)
    expect(bridge.sessions?.()).toEqual([])
    const stop = new AbortController()
    const run = outcome(bridge.run({ cid: A, inputs: { x } }, stop.signal))
    await sleep(20)
    stop.abort() // started, no stop flag: the worker is terminated 50 ms later, and a fresh one warmed
    expect(await run).toBe(AbortError.NAME)
    await sleep(100)
    expect(s.made[0]!.terminated).toBe(true)
    expect(s.made[1]!.log).toEqual(['warm', 'load xbja', 'prepare xbja'])
    expect(bridge.sessions?.()).toEqual([A])
    bridge.close()
  })
})

describe('auto engine: one residency for both thread counts', () => {
  it('the 1-thread worker gets the model from the residency; an unload reaches both workers', async () => {
    const s = stubWorkers()
    const engine = createEngine({ threadsMax: 2, createWorker: s.createWorker, idleTimeoutMs: 0, minMs: 0 })
    await engine.loadModel(A, bytes(7))
    await engine.run({ cid: A, inputs: { x } }) // calibrates: runs on both workers
    expect(s.made).toHaveLength(2)
    for (const w of s.made) expect(w.log.filter((l) => l.startsWith('load'))).toEqual(['load xbja'])
    expect(engine.resident?.(A)).toEqual({ bytes: 7 })
    expect(await engine.evict(A)).toBe(true)
    for (const w of s.made) expect([w.log.at(-1), w.models.size]).toEqual(['evict xbja', 0])
    expect(engine.resident?.(A)).toBeUndefined()
    expect(await outcome(engine.run({ cid: A, inputs: { x } }))).toBe(UnknownModelError.NAME)
    engine.close()
  })
})

describe('compute service: engines rebuilt from settings share the residency', () => {
  const service = (s: ReturnType<typeof stubWorkers>, store: Map<string, Uint8Array>) => {
    let sourced = 0
    const compute = createComputeService({
      modelSource: async (cid) => {
        sourced++
        const b = store.get(cid)
        if (!b) throw new UnknownModelError(`${cid} is not in the store`)
        return b
      },
      settings: { wasmThreads: 1, allowWebGpu: false },
      makeEngine: (o) => createEngine({ ...o, createWorker: s.createWorker, idleTimeoutMs: 0 }),
    })
    return { compute, sourced: () => sourced }
  }

  it('after a switch the new engine serves a model loaded before it, from the source', async () => {
    const s = stubWorkers()
    const store = new Map([[A, bytes(9)]])
    const { compute, sourced } = service(s, store)
    await compute.engine.loadModel(A, store.get(A)!)
    await compute.engine.run({ cid: A, inputs: { x } })
    expect(sourced()).toBe(0) // the loading worker had the bytes
    compute.configure({ wasmThreads: 2, allowWebGpu: false }) // a new engine, a new worker
    expect((await compute.engine.run({ cid: A, inputs: { x } })).ep).toBe('wasm')
    expect(s.made).toHaveLength(2)
    expect(s.made[0]!.terminated).toBe(true) // the old engine closed once idle
    expect(s.made[1]!.log).toEqual(['load xbja', 'run xbja'])
    expect(sourced()).toBe(1)
    compute.stop()
  })

  it('an unload after a switch reaches the old engine still running a job and the new one', async () => {
    const s = stubWorkers(100)
    const store = new Map([[A, bytes(9)]])
    const { compute } = service(s, store)
    await compute.engine.loadModel(A, store.get(A)!)
    const running = compute.engine.run({ cid: A, inputs: { x } }) // keeps the old engine open
    await sleep(10)
    compute.configure({ wasmThreads: 2, allowWebGpu: false })
    const next = compute.engine.run({ cid: A, inputs: { x } }) // on the new engine's worker
    await sleep(20)
    expect(s.made.map((w) => [w.terminated, w.models.size])).toEqual([
      [false, 1],
      [false, 1],
    ])
    expect(await compute.engine.evict(A)).toBe(true)
    await Promise.all([running, next])
    expect(s.made.map((w) => [w.models.size, w.log.includes('evict xbja')])).toEqual([
      [0, true],
      [0, true],
    ])
    expect(await outcome(compute.engine.run({ cid: A, inputs: { x } }))).toBe(UnknownModelError.NAME)
    compute.stop()
  })

  it('the guarded view counts a model as loaded only within the size limit', async () => {
    const s = stubWorkers()
    const { compute } = service(s, new Map())
    await compute.engine.loadModel(A, bytes(20))
    let max = 10
    const jobs = compute.engine.guarded({
      handBack: () => new AbortController().signal,
      maxModelBytes: () => max,
    })
    expect(compute.engine.resident?.(A)).toEqual({ bytes: 20 })
    expect(jobs.resident?.(A)).toBeUndefined()
    await expect(jobs.loadModel(A, bytes(20))).rejects.toMatchObject({ name: 'ModelTooLargeError' })
    max = 20
    expect(jobs.resident?.(A)).toEqual({ bytes: 20 })
    compute.stop()
  })

  it('start() lets a lazy engine start; stop() closes its worker', async () => {
    const s = stubWorkers()
    const compute = createComputeService({
      modelSource: async () => bytes(),
      lazy: true,
      makeEngine: (o) => createEngine({ ...o, threads: 1, createWorker: s.createWorker, idleTimeoutMs: 0 }),
    })
    expect(compute.engine.active).toBe(false)
    compute.start()
    expect(compute.engine.active).toBe(true)
    await sleep(20)
    expect(s.made.map((w) => w.log)).toEqual([['warm']])
    compute.stop()
    expect(s.made[0]!.terminated).toBe(true)
  })
})
