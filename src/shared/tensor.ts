/** Tensor types shared by the main thread and workers. No DOM or worker globals here. */
import { copyOf } from './bytes.ts'
import { InferenceError } from './errors.ts'

export const DTYPES = ['float32', 'int32', 'int64', 'uint8', 'int8', 'bool'] as const
export type DType = (typeof DTYPES)[number]

export type TensorData = Float32Array | Int32Array | BigInt64Array | Uint8Array | Int8Array

/** A plain, transferable tensor: ORT-agnostic so it can cross worker and wire boundaries. */
export interface Tensor {
  dtype: DType
  dims: number[]
  data: TensorData
}

export type NamedTensors = Record<string, Tensor>

/** The typed array that holds each dtype (bool as one byte per element). */
export const ARRAY_TYPES = {
  float32: Float32Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  int8: Int8Array,
  bool: Uint8Array,
} as const satisfies Record<DType, { BYTES_PER_ELEMENT: number }>

export const BYTES_PER_ELEMENT = Object.fromEntries(
  DTYPES.map((d) => [d, ARRAY_TYPES[d].BYTES_PER_ELEMENT]),
) as Record<DType, number>

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1)
}

/** Total data bytes of named tensors: what a job moves over the wire, framing aside. */
export const tensorsByteLength = (named: NamedTensors): number =>
  Object.values(named).reduce((n, t) => n + t.data.byteLength, 0)

/**
 * An ORT output (web or node) as a Tensor that owns its whole buffer, so it can be transferred
 * without detaching anything ORT still uses; InferenceError for a dtype we do not carry.
 */
export function ownedOutput(
  name: string,
  value: { type: string; dims: readonly number[]; data: unknown },
): Tensor {
  const dtype = value.type as DType
  if (!DTYPES.includes(dtype)) throw new InferenceError(`output ${name}: unsupported dtype ${value.type}`)
  let data = value.data as TensorData
  if (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength) data = copyOf(data)
  return { dtype, dims: [...value.dims], data }
}
