/** Test page: exposes the inference bridge (and a raw worker handle) on window for page.evaluate. */
import { type Remote, wrap } from 'comlink'
import { createInferenceBridge, type InferenceEngine } from '../../src/compute/bridge.ts'
import type { InferenceApi } from '../../workers/inference.worker.ts'

declare global {
  interface Window {
    __inference: InferenceEngine
    __createInferenceBridge: typeof createInferenceBridge
    /** A worker without the bridge, to test worker-level semantics such as cancel(runId). */
    __openRawWorker: () => Remote<InferenceApi>
  }
}

window.__inference = createInferenceBridge()
window.__createInferenceBridge = createInferenceBridge
window.__openRawWorker = () =>
  wrap<InferenceApi>(
    new Worker(new URL('../../workers/inference.worker.ts', import.meta.url), { type: 'module' }),
  )
document.body.dataset.ready = 'true'
