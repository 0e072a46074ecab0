/**
 * The compute service: builds the contributor's engine from its settings (threads, WebGPU) and
 * rebuilds it when they change. Every engine it builds shares one residency (residency.ts), so a
 * model loaded before a change is served after it, and an unload reaches every worker, old or new.
 * The controls configure it; nothing else constructs engines.
 *
 * @example
 * const compute = createComputeService({ modelSource: (cid) => hub.get(cid), calibration })
 * compute.configure({ wasmThreads: 0, allowWebGpu: true }) // 0: 'auto', 1 or N threads per model
 * compute.start() // contributing: the runtime and the paused sessions start now
 * await compute.engine.run({ cid, inputs })
 */
import type { Startable } from '@libp2p/interface'
import type { CalibrationStore } from '../store/calibration.ts'
import type { InferenceEngine, InitOptions } from './bridge.ts'
import { createEngine, type EngineOptions } from './engine.ts'
import { createResidency } from './residency.ts'
import type { ContributorSettings } from './settings.ts'
import { spawnInferenceWorker } from './spawn-worker.ts'
import { createSwitchableEngine, type SwitchableEngine } from './switchable-engine.ts'

export type EngineSettings = Pick<ContributorSettings, 'wasmThreads' | 'allowWebGpu'>

export interface ComputeServiceOptions {
  /** Where a fresh worker gets a loaded model's bytes back (the model store). */
  modelSource(cid: string, signal?: AbortSignal): Promise<Uint8Array>
  /** Where thread choices are remembered across sessions. */
  calibration?: CalibrationStore
  /** A caller's engine, used as is: settings then do not apply. */
  engine?: InferenceEngine
  /** Start no worker until start(), a load or a run. */
  lazy?: boolean
  /** Whether a worker stopped mid-run restarts at once (default yes); if not, start() restarts it. */
  restartNow?: () => boolean
  /** Settings to begin with (default: automatic threads, WebGPU allowed). */
  settings?: EngineSettings
  /** Builds one engine (default createEngine over the inference worker); for tests. */
  makeEngine?: (o: EngineOptions) => InferenceEngine
}

export interface ComputeService extends Startable {
  /** The engine for every caller; the controls' guarded view for served jobs wraps it. */
  readonly engine: SwitchableEngine
  /** Applies engine settings: a change sends later calls to a fresh engine (the old one closes when idle). */
  configure(s: EngineSettings): void
  /** Contributing (again): lets a lazy engine start and starts its runtime and stopped sessions now. */
  start(): void
  /** Closes the engine: its workers end once their calls have. */
  stop(): void
}

/** Settings as worker init options: 0 threads is 'auto' (no count: the engine picks per model). */
export const initOf = (s: EngineSettings): InitOptions => ({
  ...(s.wasmThreads > 0 ? { numThreads: s.wasmThreads } : {}),
  allowWebGpu: s.allowWebGpu,
})

export function createComputeService(o: ComputeServiceOptions): ComputeService {
  const residency = createResidency({ source: (cid, signal) => o.modelSource(cid, signal) })
  const makeEngine = o.makeEngine ?? createEngine
  const given = o.engine
  const build = (init: InitOptions): InferenceEngine =>
    makeEngine({
      threads: init.numThreads ?? 'auto',
      ...(init.allowWebGpu === undefined ? {} : { allowWebGpu: init.allowWebGpu }),
      ...(o.calibration ? { calibration: o.calibration } : {}),
      ...(o.restartNow ? { restartNow: o.restartNow } : {}),
      residency,
      createWorker: spawnInferenceWorker,
    })
  const engine = createSwitchableEngine({
    make: (init) => given ?? build(init),
    fixed: given != null,
    init: initOf(o.settings ?? { wasmThreads: 0, allowWebGpu: true }),
    lazy: o.lazy ?? false,
  })

  return {
    engine,
    configure: (s) => engine.configure(initOf(s)),
    start() {
      engine.activate()
      engine.warm?.().catch(() => {}) // a failed warm-up only means the next job pays for it
    },
    stop: () => engine.close(),
  }
}
