/** Raw tensor jobs: build named input tensors from JSON or at random, checked against the model spec. */
import type { TensorSpec } from '../models/catalog.ts'
import { InvalidTensorError } from '../shared/errors.ts'
import { elementCount, type NamedTensors, type Tensor } from '../shared/tensor.ts'

function fromNumbers(spec: TensorSpec, values: unknown): Tensor {
  const flat = Array.isArray(values) ? values.flat(8) : values
  const n = elementCount(spec.dims)
  if (
    !Array.isArray(flat) ||
    flat.length !== n ||
    !flat.every((v) => typeof v === 'number' && Number.isFinite(v))
  ) {
    throw new InvalidTensorError(`input "${spec.name}" needs ${n} finite numbers for dims [${spec.dims}]`)
  }
  if (spec.dtype === 'float32')
    return { dtype: 'float32', dims: [...spec.dims], data: Float32Array.from(flat) }
  if (spec.dtype === 'int32') return { dtype: 'int32', dims: [...spec.dims], data: Int32Array.from(flat) }
  throw new InvalidTensorError(`JSON input for dtype ${spec.dtype} is not supported yet`)
}

/** Accepts an array for a single-input model, or `{ name: array }` for any model. */
export function parseJsonInputs(text: string, specs: TensorSpec[]): NamedTensors {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new InvalidTensorError(`input is not valid JSON: ${(err as Error).message}`)
  }
  const only = specs.length === 1 ? specs[0] : undefined
  if (Array.isArray(parsed) && only) return { [only.name]: fromNumbers(only, parsed) }
  if (parsed == null || typeof parsed !== 'object')
    throw new InvalidTensorError('input must be an array or an object')
  const obj = parsed as Record<string, unknown>
  const out: NamedTensors = {}
  for (const spec of specs) out[spec.name] = fromNumbers(spec, obj[spec.name])
  return out
}

export function randomInputs(specs: TensorSpec[]): NamedTensors {
  const out: NamedTensors = {}
  for (const spec of specs) {
    const values = Array.from(
      { length: elementCount(spec.dims) },
      () => Math.round((Math.random() * 2 - 1) * 1e4) / 1e4,
    )
    out[spec.name] = fromNumbers(spec, values)
  }
  return out
}
