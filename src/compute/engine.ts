/**
 * The contributor's compute engine: a fixed WASM thread count, or `'auto'`, which picks 1 or N
 * threads per model. ORT-web fixes its thread count per worker, so 'auto' keeps two bridges
 * (1-thread and N-thread workers, each started lazily), calibrates each model on its first run by
 * timing both in interleaved pairs (`thread-choice.ts` decides), and caches the choice per model CID.
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
import {
  judgeThreads,
  THREAD_RULES,
  type ThreadRules,
  type ThreadVerdict,
  type TimedPair,
} from './thread-choice.ts'

export interface EngineOptions extends Omit<InferenceBridgeOptions, 'init'> {
  /** WASM threads: a count, or 'auto' (default) to choose between 1 and `maxThreads()` per model. */
  threads?: number | 'auto'
  allowWebGpu?: boolean
  /** Start the WASM runtime when the worker starts (see InitOptions.warm): for contributors. */
  warm?: boolean
  /** Where choices are remembered across sessions; without it they last as long as the engine. */
  calibration?: CalibrationStore
  /**
   * Calibration after the warm-up runs: timed pairs until the verdict is settled and their runs
   * took `minMs` (300), or `maxPairs` (24) once settled or past `minMs`, or `maxMs` (3000) once
   * `rules.minPairs` are judged, or 200 pairs (or `maxPairs` if more): an unsettled fast model gets
   * more pairs (its runs are noisy), until its pairs took `minMs` of wall time.
   */
  minMs?: number
  maxMs?: number
  maxPairs?: number
  rules?: ThreadRules
  /** Told of every calibration (for the bench): the verdict, its pairs, and its wall time. */
  onCalibrated?: (c: Calibrated) => void
  /**
   * Runs of a model after which its choice is measured again (default 8), then 8x as many after
   * each re-check (64, 512, …): a first calibration runs while V8 still compiles the model's kernels,
   * and ORT's 2-thread pool can later slow to 1-thread speed (PP-OCR detection after 10–25 runs).
   */
  recheckAfter?: number
  /** Builds the engine for one thread count (default: a worker bridge); for tests. */
  makeBridge?: (numThreads: number) => InferenceEngine
  /** The N of 'auto' (default `maxThreads()`); for tests. */
  threadsMax?: number
}

export interface Calibrated extends ThreadVerdict {
  cid: string
  timed: TimedPair[]
  /** Wall ms of the whole calibration, warm-up runs included: what the job waited beyond one run. */
  wallMs: number
  /** Wall ms of the two warm-up runs (worker start and session creation on each setting). */
  warmMs: number
  checks: number
}

/** Pairs a calibration never exceeds, however fast the model runs. */
const MAX_PAIRS = 200
/** Each re-check comes this many times more runs after the last one. */
const RECHECK_GROWTH = 8

/** The N of 'auto': what the worker would use by default (threads need cross-origin isolation). */
export function maxThreads(): number {
  return globalThis.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1
}

export function createEngine(opts: EngineOptions = {}): InferenceEngine {
  const {
    threads = 'auto',
    allowWebGpu,
    warm,
    calibration,
    minMs = 300,
    maxMs = 3000,
    maxPairs = 24,
    rules = THREAD_RULES,
    onCalibrated,
    recheckAfter = 8,
    makeBridge,
    threadsMax,
    ...bridgeOpts
  } = opts
  const n = threadsMax ?? maxThreads()
  const bridge = (numThreads: number) =>
    makeBridge?.(numThreads) ??
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
  /** Per model: the thread count (pending while calibrating), runs since, calibrations so far. */
  const choices = new Map<string, { threads: Promise<number>; runs: number; checks: number }>()
  /** Per model: the last calibration's timed pairs, pooled into a re-check that does not settle. */
  const lastTimed = new Map<string, TimedPair[]>()

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

  /**
   * Times both settings in back-to-back pairs on the job's own input, alternating which goes first
   * (1,N N,1 …) so load drift hits both alike, and lets `judgeThreads` decide on the per-pair ratios.
   * Returns the choice and the last result (outputs are bitwise equal across thread counts).
   */
  async function calibrate(
    params: RunParams,
    checks: number,
    signal?: AbortSignal,
    current = 1,
  ): Promise<[number, RunResult]> {
    const t0 = performance.now()
    // Warm-up: creates the session in each worker. Both at once unless WebGPU may answer the job
    // (then threads do not matter and the 1-thread session would be wasted): creating a session is
    // mostly single-threaded, so the two overlap on two cores.
    const caps = params.ep === 'wasm' ? undefined : await primary.capabilities(signal)
    const gpu = caps?.eps.includes('webgpu') && !caps.adapter?.isFallback
    let last = gpu ? await runOn(n, params, signal) : undefined
    if (last && last.ep !== 'wasm') return [n, last]
    ;[last] = await Promise.all([last ?? runOn(n, params, signal), runOn(1, params, signal)])
    const warmMs = performance.now() - t0
    const timed: TimedPair[] = []
    let verdict: ThreadVerdict
    let spent = 0 // run ms of the timed pairs: the budget scales with the model's run time
    const pairsFrom = performance.now()
    for (;;) {
      const pair = { one: 0, many: 0 }
      for (const t of timed.length % 2 ? [n, 1] : [1, n]) {
        last = await runOn(t, params, signal)
        pair[t === 1 ? 'one' : 'many'] = last.timing.runMs
        spent += last.timing.runMs
      }
      timed.push(pair)
      verdict = judgeThreads(timed, n, rules, current)
      // Past maxPairs only while unsettled and cheap: wall time counts, as worker round trips dominate.
      const wall = performance.now() - pairsFrom
      if (timed.length >= Math.max(MAX_PAIRS, maxPairs)) break
      if (timed.length >= maxPairs && (verdict.settled || Math.max(spent, wall) >= minMs)) break
      if (verdict.pairs >= rules.minPairs && spent >= maxMs) break
      if (verdict.settled && spent >= minMs) break
    }
    // A re-check that does not settle pools its pairs with the last calibration's: more evidence,
    // and if even that does not settle, fewer threads. Without those (after a reload) it keeps the choice.
    const prior = lastTimed.get(params.cid)
    if (!verdict.settled && prior) {
      const pooled = [...prior.slice(rules.skip), ...timed.slice(rules.skip)]
      verdict = judgeThreads(pooled, n, { ...rules, skip: 0 })
    }
    lastTimed.set(params.cid, timed)
    const rec: CalibrationRecord = {
      v: 1,
      cid: params.cid,
      threads: verdict.threads,
      maxThreads: n,
      medianMs: verdict.medianMs,
      checks,
      at: Date.now(),
    }
    onCalibrated?.({ ...verdict, cid: params.cid, timed, wallMs: performance.now() - t0, warmMs, checks })
    await calibration?.put(rec).catch(() => {}) // a failed cache write only costs a re-calibration
    return [verdict.threads, last]
  }

  /** Single flight: concurrent runs of a model wait for its one calibration, then use the choice. */
  async function calibrateOnce(params: RunParams, checks: number, signal?: AbortSignal, current?: number) {
    const calibrated = calibrate(params, checks, signal, current)
    const decided = calibrated.then(([t]) => t)
    choices.set(params.cid, { threads: decided, runs: 0, checks })
    decided.catch(() => choices.get(params.cid)?.threads === decided && choices.delete(params.cid))
    return (await calibrated)[1]
  }

  async function run(params: RunParams, signal?: AbortSignal): Promise<RunResult> {
    if (params.ep === 'webgpu') return runOn(n, params, signal)
    const cid = params.cid
    let choice = choices.get(cid)
    if (!choice) {
      const stored = await calibration?.get(cid).catch(() => undefined)
      if (!(stored && stored.maxThreads === n && pool.has(stored.threads)))
        return calibrateOnce(params, 1, signal)
      choice = { threads: Promise.resolve(stored.threads), runs: 0, checks: stored.checks ?? 1 }
      choices.set(cid, choice)
    }
    // Re-checks once the model is warm in this worker (the first calibration's conditions, fresh
    // workers and kernels still compiling, have passed), then ever more rarely as conditions drift.
    if (++choice.runs === recheckAfter * RECHECK_GROWTH ** (choice.checks - 1))
      return calibrateOnce(params, choice.checks + 1, signal, await choice.threads.catch(() => undefined))
    let t: number
    try {
      t = await choice.threads
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
    warm: async (signal) => primary.warm?.(signal),
    async loadModel(cid, bytes, signal) {
      await primary.loadModel(cid, bytes, signal) // checks the hash once
      loadedIn.get(n)!.add(cid)
      if (!bridgeOpts.modelSource) pending.set(cid, bytes)
    },
    run,
    async evict(cid, signal) {
      pending.delete(cid)
      choices.delete(cid)
      lastTimed.delete(cid)
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
