/**
 * Raw tensor jobs: named input tensors from JSON (or at random) checked against the model spec, and
 * outputs as JSON. `.npy` files are in npy.ts.
 */
import type { TensorSpec } from '../models/catalog.ts'
import { InvalidTensorError } from '../shared/errors.ts'
import {
  type DType,
  elementCount,
  type NamedTensors,
  type Tensor,
  type TensorData,
} from '../shared/tensor.ts'

const bad = (msg: string): never => {
  throw new InvalidTensorError(msg)
}

/** Shape of a nested array (rectangular), e.g. [[1,2],[3,4]] → [2,2]. */
function nestedDims(v: unknown): number[] {
  const dims: number[] = []
  let cur = v
  while (Array.isArray(cur)) {
    dims.push(cur.length)
    cur = cur[0]
  }
  return dims
}

function typed(dtype: DType, flat: unknown[], name: string): TensorData {
  const ints = dtype !== 'float32'
  const ok = flat.every((x) => typeof x === 'number' && Number.isFinite(x) && (!ints || Number.isInteger(x)))
  if (!ok) bad(`input "${name}" needs finite ${ints ? 'integers' : 'numbers'} for dtype ${dtype}`)
  const nums = flat as number[]
  switch (dtype) {
    case 'float32':
      return Float32Array.from(nums)
    case 'int32':
      return Int32Array.from(nums)
    case 'int64':
      return BigInt64Array.from(nums, (x) => BigInt(x))
    case 'int8':
      return Int8Array.from(nums)
    case 'bool':
      return Uint8Array.from(nums, (x) => (x ? 1 : 0))
    default:
      return Uint8Array.from(nums)
  }
}

/** Dims of `spec` with its dynamic (-1) entries filled from `actual`; throws if a fixed one differs. */
export function matchDims(spec: TensorSpec, actual: number[]): number[] {
  if (actual.length !== spec.dims.length || spec.dims.some((d, i) => d >= 0 && d !== actual[i]))
    bad(`input "${spec.name}" has dims [${actual}], the model expects [${spec.dims}] (-1 = any)`)
  return actual
}

/** A value is a (nested) array, or `{ dims, data }` with flat or nested data. */
function fromJson(spec: TensorSpec, value: unknown): Tensor {
  let dims: number[]
  let data: unknown
  if (value != null && typeof value === 'object' && !Array.isArray(value)) {
    const o = value as { dims?: unknown; data?: unknown }
    if (!Array.isArray(o.dims) || !o.dims.every((d) => Number.isSafeInteger(d) && d >= 0))
      return bad(`input "${spec.name}": dims must be an array of non-negative integers`)
    dims = o.dims as number[]
    data = o.data
  } else {
    const fixed = spec.dims.every((d) => d >= 0)
    dims = fixed && Array.isArray(value) && nestedDims(value).length === 1 ? spec.dims : nestedDims(value)
    data = value
  }
  if (!Array.isArray(data)) return bad(`input "${spec.name}" must be an array of numbers`)
  const flat = data.flat(Number.POSITIVE_INFINITY)
  const n = elementCount(dims)
  if (flat.length !== n) bad(`input "${spec.name}" has ${flat.length} values, dims [${dims}] need ${n}`)
  return { dtype: spec.dtype, dims: matchDims(spec, dims), data: typed(spec.dtype, flat, spec.name) }
}

/** Accepts an array for a single-input model, or `{ name: array | { dims, data } }` for any model. */
export function parseJsonInputs(text: string, specs: TensorSpec[]): NamedTensors {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new InvalidTensorError(`input is not valid JSON: ${(err as Error).message}`)
  }
  const only = specs.length === 1 ? specs[0] : undefined
  if (Array.isArray(parsed) && only) return { [only.name]: fromJson(only, parsed) }
  if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed))
    return bad('input must be an array or an object of named inputs')
  const obj = parsed as Record<string, unknown>
  const out: NamedTensors = {}
  for (const spec of specs) {
    if (!(spec.name in obj)) bad(`input "${spec.name}" is missing`)
    out[spec.name] = fromJson(spec, obj[spec.name])
  }
  return out
}

/** Example dims for a spec: dynamic batch → 1, other dynamic dims → 32. */
export const exampleDims = (spec: TensorSpec) => spec.dims.map((d, i) => (d >= 0 ? d : i === 0 ? 1 : 32))

export function randomInputs(specs: TensorSpec[]): NamedTensors {
  const out: NamedTensors = {}
  for (const spec of specs) {
    const dims = exampleDims(spec)
    const float = spec.dtype === 'float32'
    const values = Array.from({ length: elementCount(dims) }, () =>
      float ? Math.round((Math.random() * 2 - 1) * 1e4) / 1e4 : Math.floor(Math.random() * 2),
    )
    out[spec.name] = { dtype: spec.dtype, dims, data: typed(spec.dtype, values, spec.name) }
  }
  return out
}

/** JSON-safe values: float32 with the 9 digits that round-trip it, int64 as numbers when exact, else strings. */
const plain = (data: TensorData): (number | string)[] =>
  data instanceof Float32Array
    ? Array.from(data, (v) => Number(v.toPrecision(9)))
    : Array.from(data as ArrayLike<number | bigint>, (v) =>
        typeof v === 'bigint' ? (Number.isSafeInteger(Number(v)) ? Number(v) : v.toString()) : v,
      )

/** Inputs as JSON that parseJsonInputs reads back: `{ name: { dims, data } }`. */
export function inputsToJson(named: NamedTensors): string {
  const obj = Object.fromEntries(
    Object.entries(named).map(([k, t]) => [k, { dims: t.dims, data: plain(t.data) }]),
  )
  return JSON.stringify(obj)
}

/** Outputs as JSON for download: `{ name: { dtype, dims, data } }`. */
export function tensorsToJson(named: NamedTensors): string {
  const obj = Object.fromEntries(
    Object.entries(named).map(([k, t]) => [k, { dtype: t.dtype, dims: t.dims, data: plain(t.data) }]),
  )
  return JSON.stringify(obj)
}

/** Random inputs as JSON: a plain array for a single fixed-shape input, else `{ name: { dims, data } }`. */
export function randomInputsJson(specs: TensorSpec[]): string {
  const named = randomInputs(specs)
  const only = specs.length === 1 && specs[0]!.dims.every((d) => d >= 0) ? named[specs[0]!.name] : undefined
  return only ? JSON.stringify(plain(only.data)) : inputsToJson(named)
}
