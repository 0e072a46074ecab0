/** Deterministic bench inputs, shared by the bench page and Node (onnxruntime-node), so both run the same tensor. */
import { mulberry32 } from '../src/shared/mlp.ts'

/** batch×… float32 values in [-1, 1) from `seed`: the same bytes in every context. */
export function seededData(dims: readonly number[], seed: number): Float32Array {
  const rand = mulberry32(seed)
  const out = new Float32Array(dims.reduce((a, b) => a * b, 1))
  for (let i = 0; i < out.length; i++) out[i] = rand() * 2 - 1
  return out
}

export interface InputSpec {
  name: string
  dims: number[]
}

export const seededInputs = (specs: readonly InputSpec[], seed: number) =>
  Object.fromEntries(
    specs.map((s, i) => [
      s.name,
      { dtype: 'float32' as const, dims: s.dims, data: seededData(s.dims, seed + i) },
    ]),
  )
