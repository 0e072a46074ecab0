/**
 * Runs the models of disputes (src/dispute/serve.ts): on WASM, one thread, graph optimisation
 * 'disabled' (a trace must hold the model's own nodes), in a worker of its own, so a dispute never
 * waits on the job engine nor disturbs its sessions. The worker starts at the first run and goes
 * after an idle minute, with the model bytes it was given.
 *
 * @example
 * const runner = createDisputeRunner()
 * const trace = await runner.run(traceModelBytes, { x })
 * runner.close()
 */
import type { NamedTensors } from '../shared/tensor.ts'
import { createInferenceBridge, type InferenceEngine, type InitOptions } from './bridge.ts'
import { engineRunner } from './engine-runner.ts'
import { spawnInferenceWorker } from './spawn-worker.ts'

/** RunNode (src/dispute/referee.ts) with a signal. */
export type DisputeRun = (
  model: Uint8Array,
  inputs: NamedTensors,
  signal?: AbortSignal,
) => Promise<NamedTensors>

export interface DisputeRunner {
  run: DisputeRun
  /** Ends its worker; resolves once that worker is gone (a Node thread ends with its run). */
  close(): Promise<void>
}

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
