/** onnxruntime sessions for one run in tests (onnxruntime-node, or onnxruntime-web's WASM in Node). */
import * as ort from 'onnxruntime-node'
import { type NamedTensors, ownedOutput, type Tensor } from '../../src/shared/tensor.ts'

export type Level = 'disabled' | 'basic' | 'extended' | 'all'
/** What both runtimes share for a run: onnxruntime-node's module, or onnxruntime-web's. */
export type Runtime = Pick<typeof ort, 'InferenceSession' | 'Tensor'>

/** A one-thread session at graph optimisation `level`; `run` copies outputs out of ORT. */
export async function openSession(rt: Runtime, bytes: Uint8Array, level: Level = 'disabled') {
  const s = await rt.InferenceSession.create(bytes, {
    graphOptimizationLevel: level,
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  })
  return {
    async run(inputs: NamedTensors): Promise<NamedTensors> {
      const feeds = Object.fromEntries(
        Object.entries(inputs).map(([k, t]) => [k, new rt.Tensor(t.dtype, t.data as never, t.dims)]),
      )
      const out = await s.run(feeds)
      return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, ownedOutput(k, v as never)]))
    },
    release: () => s.release(),
  }
}

/** Runs `bytes` once on one thread at graph optimisation `level`; outputs copied out of ORT. */
export async function runOn(
  rt: Runtime,
  bytes: Uint8Array,
  inputs: NamedTensors,
  level: Level = 'disabled',
): Promise<NamedTensors> {
  const s = await openSession(rt, bytes, level)
  try {
    return await s.run(inputs)
  } finally {
    await s.release()
  }
}

/** onnxruntime-node, one run. */
export const ortRun = (bytes: Uint8Array, inputs: NamedTensors, level: Level = 'disabled') =>
  runOn(ort, bytes, inputs, level)

/** Seeded float32 values in [-1, 1). */
export function floats(dims: number[], seed: number): Tensor {
  const data = new Float32Array(dims.reduce((a, b) => a * b, 1))
  let s = seed
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) % 2 ** 31
    data[i] = s / 2 ** 30 - 1
  }
  return { dtype: 'float32', dims, data }
}
