import { createInferenceBridge, type InferenceEngine, type InitOptions } from './bridge.ts'
import { type DisputeRunner, engineRunner } from './engine-runner.ts'
import { spawnInferenceWorker } from './spawn-worker.ts'

/** RunNode (src/dispute/referee.ts) with a signal. */
export type { DisputeRun, DisputeRunner } from './engine-runner.ts'

export interface DisputeRunnerOptions {
  /** Default: the app's inference worker (spawn-worker.ts). */
  createWorker?: () => Worker
  /** The worker goes after this long without a run (default 60 s). */
  idleMs?: number
}

/** The worker's init: what makes its results a dispute's. */
export const DISPUTE_INIT: InitOptions = { numThreads: 1, allowWebGpu: false, graphOptimization: 'disabled' }

export function createDisputeRunner(o: DisputeRunnerOptions = {}): DisputeRunner {
  const start = (): InferenceEngine =>
    createInferenceBridge({
      init: DISPUTE_INIT,
      idleTimeoutMs: 0, // the runner closes the whole bridge when idle: its bytes go too
      createWorker: o.createWorker ?? spawnInferenceWorker,
    })
  return engineRunner(start, { ep: 'wasm', ...(o.idleMs !== undefined ? { idleMs: o.idleMs } : {}) })
}
