/**
 * The contributor's compute engine: a fixed WASM thread count, or `'auto'`, which picks 1 or N
 * threads per model. ORT-web fixes its thread count per worker, so 'auto' keeps two bridges
 * (1-thread and N-thread workers, each started lazily), calibrates each model once on its first run
 * by timing both, and caches the choice per model CID.
 *
 * @example
 * const engine = createEngine({ threads: 'auto', calibration: calibrationStore(store) })
 */
import { AbortError } from '../shared/errors.ts'
import type { CalibrationRecord, CalibrationStore } from '../store/calibration.ts'
import {
  createInferenceBridge,
  type InferenceBridgeOptions,
  type InferenceEngine,
  type RunParams,
  type RunResult,
} from './bridge.ts'

export interface EngineOptions extends Omit<InferenceBridgeOptions, 'init'> {
  /** WASM threads: a count, or 'auto' (default) to choose between 1 and `maxThreads()` per model. */
  threads?: number | 'auto'
  allowWebGpu?: boolean
  /** Start the WASM runtime when the worker starts (see InitOptions.warm): for contributors. */
  warm?: boolean
  /** Where choices are remembered across sessions; without it they last as long as the engine. */
  calibration?: CalibrationStore
  /** Calibration per thread setting after warm-up: at least `minRuns`, then until `budgetMs` is spent. */
  minRuns?: number
  budgetMs?: number
}

/** The N of 'auto': what the worker would use by default (threads need cross-origin isolation). */
export function maxThreads(): number {
  return globalThis.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1
}

/** Multi-threading must win by this margin: fewer threads leave cores to other jobs and tabs. */
const MARGIN = 0.97
const MAX_RUNS = 20

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

export function createEngine(opts: EngineOptions = {}): InferenceEngine {
  const {
    threads = 'auto',
    allowWebGpu,
    warm,
    calibration,
    minRuns = 3,
    budgetMs = 300,
    ...bridgeOpts
  } = opts
  const n = maxThreads()
  const bridge = (numThreads: number) =>
    createInferenceBridge({
      ...bridgeOpts,
      init: {
        numThreads,
        ...(allowWebGpu === undefined ? {} : { allowWebGpu }),
        ...(warm === undefined ? {} : { warm }),
      },
    })
  if (threads !== 'auto' || n === 1) return bridge(threads === 'auto' ? n : threads)

  const pool = new Map<number, InferenceEngine>([
    [n, bridge(n)],
    [1, bridge(1)],
  ])
  const primary = pool.get(n)!
  /** Bytes for bridges that have not loaded a model yet (only without a modelSource). */
  const pending = new Map<string, Uint8Array>()
  const loadedIn = new Map<number, Set<string>>([...pool.keys()].map((t) => [t, new Set<string>()]))
  const choices = new Map<string, Promise<number>>()

  async function ensure(t: number, cid: string, signal?: AbortSignal): Promise<InferenceEngine> {
    const eng = pool.get(t)!
    const loaded = loadedIn.get(t)!
    if (!loaded.has(cid)) {
      const bytes = pending.get(cid) ?? (await bridgeOpts.modelSource?.(cid))
      if (bytes) await eng.loadModel(cid, bytes, signal)
      loaded.add(cid) // without bytes the worker answers UnknownModelError, as a single bridge would
    }
    return eng
  }

  const runOn = async (t: number, params: RunParams, signal?: AbortSignal) =>
    (await ensure(t, params.cid, signal)).run(params, signal)

  /** Times both settings alternately on the job's own input; returns the choice and the last result. */
  async function calibrate(params: RunParams, signal?: AbortSignal): Promise<[number, RunResult]> {
    let last = await runOn(n, params, signal) // warm-up: creates the session
    if (last.ep !== 'wasm') return [n, last] // WebGPU: threads do not matter
    await runOn(1, params, signal)
    const times = new Map<number, number[]>([
      [1, []],
      [n, []],
    ])
    let spent = 0
    for (let i = 0; i < MAX_RUNS && (i < minRuns || spent < budgetMs); i++) {
      for (const t of i % 2 ? [n, 1] : [1, n]) {
        last = await runOn(t, params, signal)
        times.get(t)!.push(last.timing.runMs)
        spent += last.timing.runMs
      }
    }
    const medianMs = { 1: median(times.get(1)!), [n]: median(times.get(n)!) }
    const chosen = medianMs[n]! < MARGIN * medianMs[1]! ? n : 1
    const rec: CalibrationRecord = {
      v: 1,
      cid: params.cid,
      threads: chosen,
      maxThreads: n,
      medianMs,
      at: Date.now(),
    }
    await calibration?.put(rec).catch(() => {}) // a failed cache write only costs a re-calibration
    return [chosen, last]
  }

  async function run(params: RunParams, signal?: AbortSignal): Promise<RunResult> {
    if (params.ep === 'webgpu') return runOn(n, params, signal)
    const cid = params.cid
    let choice = choices.get(cid)
    if (!choice) {
      const stored = await calibration?.get(cid).catch(() => undefined)
      if (!(stored && stored.maxThreads === n && pool.has(stored.threads))) {
        // Single flight: concurrent runs of this model wait for one calibration, then use its choice.
        const calibrated = calibrate(params, signal)
        const decided = calibrated.then(([t]) => t)
        choices.set(cid, decided)
        decided.catch(() => choices.get(cid) === decided && choices.delete(cid))
        return (await calibrated)[1]
      }
      choice = Promise.resolve(stored.threads)
      choices.set(cid, choice)
    }
    let t: number
    try {
      t = await choice
    } catch (err) {
      if (signal?.aborted) throw new AbortError('aborted')
      // Another job's calibration was cancelled: calibrate with this one instead.
      if ((err as Error).name === AbortError.NAME) return run(params, signal)
      throw err
    }
    return runOn(t, params, signal)
  }

  return {
    capabilities: (signal) => primary.capabilities(signal),
    async loadModel(cid, bytes, signal) {
      await primary.loadModel(cid, bytes, signal) // checks the hash once
      loadedIn.get(n)!.add(cid)
      if (!bridgeOpts.modelSource) pending.set(cid, bytes)
    },
    run,
    async evict(cid, signal) {
      pending.delete(cid)
      choices.delete(cid)
      let had = false
      for (const [t, eng] of pool) {
        loadedIn.get(t)!.delete(cid)
        had = (await eng.evict(cid, signal)) || had
      }
      return had
    },
    close() {
      for (const eng of pool.values()) eng.close()
    },
  }
}
