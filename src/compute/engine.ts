/**
 * The contributor's compute engine: a fixed WASM thread count, or `'auto'`, which picks 1 or N
 * threads per model. ORT-web fixes its thread count per worker, so 'auto' keeps two bridges
 * (1-thread and N-thread workers, each started lazily), calibrates each model on its first run by
 * timing both in interleaved pairs (`thread-choice.ts` decides), and caches the choice per model CID.
 * Both bridges share one residency (residency.ts): a model loaded once reaches either worker on its
 * first run there, and an unload reaches both; this layer keeps no list of models.
 *
 * @example
 * const engine = createEngine({ threads: 'auto', calibration: calibrationStore(store) })
 */
import { AbortError } from '../shared/errors.ts'
import { threadCount } from '../shared/threads.ts'
import type { CalibrationRecord, CalibrationStore } from '../store/calibration.ts'
import {
  createInferenceBridge,
  type InferenceBridgeOptions,
  type InferenceEngine,
  type RunParams,
  type RunResult,
} from './bridge.ts'
import { createResidency, type Residency } from './residency.ts'
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
  /** Builds the engine for one thread count on the shared residency (default: a worker bridge); for tests. */
  makeBridge?: (numThreads: number, residency: Residency) => InferenceEngine
  /** The N of 'auto' (default `maxThreads()`); for tests. */
  threadsMax?: number
}

/** A model's thread count (pending while looked up or calibrated), runs since, calibrations so far. */
interface Choice {
  threads: Promise<number>
  runs: number
  checks: number
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
  return threadCount({
    cores: globalThis.navigator?.hardwareConcurrency,
    isolated: globalThis.crossOriginIsolated === true,
  })
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
    residency: given,
    modelSource,
    ...bridgeOpts
  } = opts
  const n = threadsMax ?? maxThreads()
  const residency = given ?? createResidency(modelSource ? { source: modelSource } : {})
  const bridge = (numThreads: number) =>
    makeBridge?.(numThreads, residency) ??
    createInferenceBridge({
      ...bridgeOpts,
      residency,
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
  const budget = { minMs, maxMs, maxPairs, rules, recheckAfter }
  return autoEngine({
    n,
    pool,
    primary: pool.get(n)!,
    residency,
    choices: new Map(),
    lastTimed: new Map(),
    calibration,
    budget,
    onCalibrated,
  })
}

/** The 'auto' engine's parts: both bridges, the per-model choices, and how calibrations are budgeted. */
interface Auto {
  n: number
  pool: Map<number, InferenceEngine>
  primary: InferenceEngine
  residency: Residency
  choices: Map<string, Choice>
  /** Per model: the last calibration's timed pairs, pooled into a re-check that does not settle. */
  lastTimed: Map<string, TimedPair[]>
  calibration: CalibrationStore | undefined
  budget: { minMs: number; maxMs: number; maxPairs: number; rules: ThreadRules; recheckAfter: number }
  onCalibrated: ((c: Calibrated) => void) | undefined
}

function autoEngine(a: Auto): InferenceEngine {
  return {
    capabilities: (signal) => a.primary.capabilities(signal),
    // Both workers once both ran models (a pause terminates the ones running): resuming re-creates them.
    async warm(signal) {
      const used = [...a.pool].filter(([t, eng]) => t === a.n || (eng.sessions?.().length ?? 1) > 0)
      await Promise.all(used.map(([, eng]) => eng.warm?.(signal)))
    },
    /** In the N-thread worker, which checks the hash; the 1-thread one gets it from the residency. */
    loadModel: (cid, bytes, signal) => a.primary.loadModel(cid, bytes, signal),
    run: (params, signal) => run(a, params, signal),
    resident: (cid) => a.residency.resident(cid),
    async evict(cid, signal) {
      a.choices.delete(cid)
      a.lastTimed.delete(cid)
      return a.residency.drop(cid, signal) // reaches both workers
    },
    close() {
      for (const eng of a.pool.values()) eng.close()
    },
  }
}

/** The bridge sends the model to its worker first if that worker lacks it (from the residency). */
function runOn(a: Auto, t: number, params: RunParams, signal?: AbortSignal): Promise<RunResult> {
  return a.pool.get(t)!.run(params, signal)
}

/**
 * Times both settings in back-to-back pairs on the job's own input, alternating which goes first
 * (1,N N,1 …) so load drift hits both alike, and lets `judgeThreads` decide on the per-pair ratios.
 * Returns the choice and the last result (outputs are bitwise equal across thread counts).
 */
async function calibrate(
  a: Auto,
  params: RunParams,
  checks: number,
  signal?: AbortSignal,
  current = 1,
): Promise<[number, RunResult]> {
  const t0 = performance.now()
  const [warmed, gpu] = await warmUp(a, params, signal)
  if (gpu) return [a.n, warmed]
  const warmMs = performance.now() - t0
  const { timed, verdict: measured, last } = await timePairs(a, params, current, warmed, signal)
  const verdict = poolPrior(a, params.cid, timed, measured)
  const rec: CalibrationRecord = {
    v: 1,
    cid: params.cid,
    threads: verdict.threads,
    maxThreads: a.n,
    medianMs: verdict.medianMs,
    checks,
    at: Date.now(),
  }
  a.onCalibrated?.({ ...verdict, cid: params.cid, timed, wallMs: performance.now() - t0, warmMs, checks })
  await a.calibration?.put(rec).catch(() => {}) // a failed cache write only costs a re-calibration
  return [verdict.threads, last]
}

/**
 * Warm-up: creates the session in each worker. Both at once unless WebGPU may answer the job
 * (then threads do not matter and the 1-thread session would be wasted): creating a session is
 * mostly single-threaded, so the two overlap on two cores. Returns the last result, and whether
 * WebGPU answered it (then there is nothing to time).
 */
async function warmUp(a: Auto, params: RunParams, signal?: AbortSignal): Promise<[RunResult, boolean]> {
  const caps = params.ep === 'wasm' ? undefined : await a.primary.capabilities(signal)
  const gpu = caps?.eps.includes('webgpu') && !caps.adapter?.isFallback
  const last = gpu ? await runOn(a, a.n, params, signal) : undefined
  if (last && last.ep !== 'wasm') return [last, true]
  const [both] = await Promise.all([last ?? runOn(a, a.n, params, signal), runOn(a, 1, params, signal)])
  return [both, false]
}

/** The timed pairs, until the budget (EngineOptions.minMs) says the verdict has enough of them. */
async function timePairs(
  a: Auto,
  params: RunParams,
  current: number,
  warmed: RunResult,
  signal?: AbortSignal,
): Promise<{ timed: TimedPair[]; verdict: ThreadVerdict; last: RunResult }> {
  const { n } = a
  const { minMs, maxMs, maxPairs, rules } = a.budget
  let last = warmed
  const timed: TimedPair[] = []
  let verdict: ThreadVerdict
  let spent = 0 // run ms of the timed pairs: the budget scales with the model's run time
  const pairsFrom = performance.now()
  for (;;) {
    const pair = { one: 0, many: 0 }
    for (const t of timed.length % 2 ? [n, 1] : [1, n]) {
      last = await runOn(a, t, params, signal)
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
  return { timed, verdict, last }
}

/**
 * A re-check that does not settle pools its pairs with the last calibration's: more evidence,
 * and if even that does not settle, fewer threads. Without those (after a reload) it keeps the choice.
 */
function poolPrior(a: Auto, cid: string, timed: TimedPair[], verdict: ThreadVerdict): ThreadVerdict {
  const { rules } = a.budget
  const prior = a.lastTimed.get(cid)
  let result = verdict
  if (!verdict.settled && prior) {
    const pooled = [...prior.slice(rules.skip), ...timed.slice(rules.skip)]
    result = judgeThreads(pooled, a.n, { ...rules, skip: 0 })
  }
  a.lastTimed.set(cid, timed)
  return result
}

/**
 * Single flight: one decision per model at a time (the stored choice, else a calibration on this
 * job's input), which later jobs wait on. If it fails, `undo` runs first and only this job gets the
 * error: the waiters try again on their own input.
 */
async function decide<R>(
  a: Auto,
  cid: string,
  checks: number,
  work: (choice: Choice) => Promise<[number, R]>,
  undo: () => void,
): Promise<R> {
  let settle = { resolve: (_: number) => {}, reject: (_: unknown) => {} }
  const threads = new Promise<number>((resolve, reject) => {
    settle = { resolve, reject }
  })
  threads.catch(() => {})
  const choice: Choice = { threads, runs: 0, checks }
  a.choices.set(cid, choice)
  try {
    const [t, result] = await work(choice)
    settle.resolve(t)
    return result
  } catch (err) {
    if (a.choices.get(cid) === choice) undo()
    settle.reject(err)
    throw err
  }
}

/** A model's first run here: the stored choice, else a calibration on this job's input. */
function first(a: Auto, params: RunParams, signal?: AbortSignal): Promise<RunResult | undefined> {
  return decide<RunResult | undefined>(
    a,
    params.cid,
    1,
    async (choice) => {
      const stored = await a.calibration?.get(params.cid).catch(() => undefined)
      if (!(stored && stored.maxThreads === a.n && a.pool.has(stored.threads)))
        return calibrate(a, params, 1, signal)
      choice.checks = stored.checks ?? 1
      return [stored.threads, undefined]
    },
    () => a.choices.delete(params.cid), // nothing was decided: the next job decides
  )
}

/** A re-check; one that fails (bad input, cancelled) keeps the choice, and the next job re-checks. */
function recheck(
  a: Auto,
  choice: Choice,
  due: number,
  current: number,
  params: RunParams,
  signal?: AbortSignal,
): Promise<RunResult> {
  return decide(
    a,
    params.cid,
    choice.checks + 1,
    () => calibrate(a, params, choice.checks + 1, signal, current),
    () => {
      choice.runs = due - 1
      a.choices.set(params.cid, choice)
    },
  )
}

/** The choice's thread count, or undefined if the job deciding it failed: that error is its own. */
async function decided(choice: Choice, signal?: AbortSignal): Promise<number | undefined> {
  try {
    return await choice.threads
  } catch {
    if (signal?.aborted) throw new AbortError('aborted')
    return undefined
  }
}

async function run(a: Auto, params: RunParams, signal?: AbortSignal): Promise<RunResult> {
  if (params.ep === 'webgpu') return runOn(a, a.n, params, signal)
  const choice = a.choices.get(params.cid)
  if (!choice) return (await first(a, params, signal)) ?? run(a, params, signal)
  // Re-checks once the model is warm in this worker (the first calibration's conditions, fresh
  // workers and kernels still compiling, have passed), then ever more rarely as conditions drift.
  const due = a.budget.recheckAfter * RECHECK_GROWTH ** (choice.checks - 1)
  const recheckNow = ++choice.runs === due
  const t = await decided(choice, signal)
  if (t === undefined) return run(a, params, signal) // decide again, on this job's input
  if (recheckNow) return recheck(a, choice, due, t, params, signal)
  return runOn(a, t, params, signal)
}
