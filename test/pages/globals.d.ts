/** The globals the test pages (./inference.ts, ./store.ts) set, for page.evaluate in the e2e drivers. */
import type { Remote } from 'comlink'
import type { createInferenceBridge, InferenceEngine } from '../../src/compute/bridge.ts'
import type { InferenceApi } from '../../workers/inference.worker.ts'
import type { StoreApi } from './store.ts'

declare global {
  interface Window {
    __inference: InferenceEngine
    __createInferenceBridge: typeof createInferenceBridge
    /** A worker without the bridge, to test worker-level semantics such as cancel(runId). */
    __openRawWorker: () => Remote<InferenceApi>
    __store: StoreApi
    /** Readwrite transactions opened since load, by sorted store names. */
    __writes: Record<string, number>
  }
}
