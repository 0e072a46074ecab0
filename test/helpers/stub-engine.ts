/** An inference engine that answers its capabilities and runs nothing: for peers whose jobs are not the point. */
import type { InferenceEngine } from '../../src/compute/bridge.ts'

export function stubEngine(overrides: Partial<InferenceEngine> = {}): InferenceEngine {
  return {
    capabilities: async () => ({
      eps: ['cpu'],
      adapter: null,
      threads: 1,
      crossOriginIsolated: false,
      ortVersion: 'stub',
    }),
    loadModel: async () => {},
    run: async () => {
      throw new Error('no job runs here')
    },
    evict: async () => false,
    close() {},
    ...overrides,
  }
}
