/**
 * The Node peer's dispute runner (src/compute/dispute-runner.ts): onnxruntime-node at graph
 * optimisation 'disabled', one intra-op thread, in a worker process of its own (node/engine.ts), so a
 * dispute never waits on the job engine's workers. The process goes after an idle minute.
 *
 * @example
 * const runner = createNodeDisputeRunner()
 * const trace = await runner.run(traceModelBytes, { x })
 * await runner.close() // once its process has exited
 */
import type { DisputeRunner } from '../src/compute/dispute-runner.ts'
import { engineRunner } from '../src/compute/engine-runner.ts'
import { createNodeEngine } from './engine.ts'

export function createNodeDisputeRunner(o: { idleMs?: number } = {}): DisputeRunner {
  const start = () =>
    createNodeEngine({ threads: 1, workers: 1, maxSessions: 1, graphOptimization: 'disabled' })
  return { ...engineRunner(start, o.idleMs !== undefined ? { idleMs: o.idleMs } : {}), ep: 'cpu' }
}
