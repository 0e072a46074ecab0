/** Test page: exposes the inference bridge (and a raw worker handle) on window for page.evaluate. */
import { wrap } from 'comlink'
import { createInferenceBridge } from '../../src/compute/bridge.ts'
import type { InferenceApi } from '../../workers/inference.worker.ts'

window.__inference = createInferenceBridge()
window.__createInferenceBridge = createInferenceBridge
window.__openRawWorker = () =>
  wrap<InferenceApi>(
    new Worker(new URL('../../workers/inference.worker.ts', import.meta.url), { type: 'module' }),
  )
document.body.dataset.ready = 'true'
