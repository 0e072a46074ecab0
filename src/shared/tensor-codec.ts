/**
 * Canonical tensor encoding: `{ dtype, dims, data }` with little-endian data bytes. Output CIDs hash
 * `dagCbor.encode(encodeTensors(named))`, so equal tensors give equal CIDs on every platform.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { InvalidTensorError } from './errors.ts'
import {
  ARRAY_TYPES,
  BYTES_PER_ELEMENT,
  DTYPES,
  type DType,
  type NamedTensors,
  type Tensor,
  type TensorData,
} from './tensor.ts'

export interface EncodedTensor {
  dtype: DType
  dims: number[]
  data: Uint8Array
}
export type EncodedTensors = Record<string, EncodedTensor>

export interface TensorLimits {
  /** Max elements per tensor (default DEFAULT_MAX_ELEMENTS). */
  maxElements?: number
  /** Max tensors in a NamedTensors map (default MAX_TENSORS). */
  maxTensors?: number
}

export const MAX_RANK = 8
export const MAX_TENSORS = 64
export const MAX_NAME_LENGTH = 128
export const DEFAULT_MAX_ELEMENTS = 4 * 1024 * 1024

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

type ArrayCtor = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => TensorData
const CTORS = ARRAY_TYPES as Record<DType, ArrayCtor>

const fail = (msg: string): never => {
  throw new InvalidTensorError(msg)
}

/** Reverses each `width`-byte group: LE <-> BE, only used on big-endian hosts. */
function swapped(bytes: Uint8Array, width: number): Uint8Array {
  const out = new Uint8Array(bytes.length)
  for (let i = 0; i < bytes.length; i += width) {
    for (let j = 0; j < width; j++) out[i + j] = bytes[i + width - 1 - j]!
  }
  return out
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x) || ArrayBuffer.isView(x)) return false
  const proto = Object.getPrototypeOf(x)
  return proto === Object.prototype || proto === null
}

/** Validates dims and returns the element count; throws past `maxElements` without overflowing. */
function checkDims(dims: unknown, maxElements: number): number {
  if (!Array.isArray(dims)) return fail('dims must be an array')
  if (dims.length > MAX_RANK) fail(`rank ${dims.length} exceeds ${MAX_RANK}`)
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) fail(`dims must be non-negative integers, got ${String(d)}`)
  }
  if (dims.includes(0)) return 0
  let n = 1
  for (const d of dims as number[]) {
    n *= d
    if (n > maxElements) fail(`element count exceeds limit ${maxElements} (dims [${dims.join(',')}])`)
  }
  return n
}

/** Encodes one tensor; the data is a copy-free view of the typed array on little-endian hosts. */
export function encodeTensor(t: Tensor): EncodedTensor {
  if (!DTYPES.includes(t.dtype)) fail(`unknown dtype ${String(t.dtype)}`)
  if (!(t.data instanceof CTORS[t.dtype]))
    fail(`dtype ${t.dtype} does not match ${t.data?.constructor?.name}`)
  const n = checkDims(t.dims, Number.MAX_SAFE_INTEGER)
  if (t.data.length !== n) fail(`data has ${t.data.length} elements, dims [${t.dims.join(',')}] need ${n}`)
  const width = BYTES_PER_ELEMENT[t.dtype]
  const view = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)
  return {
    dtype: t.dtype,
    dims: [...t.dims],
    data: LITTLE_ENDIAN || width === 1 ? view : swapped(view, width),
  }
}

/** Strictly validates an untrusted encoded tensor and returns an aligned, native-endian Tensor. */
export function decodeTensor(obj: unknown, limits: TensorLimits = {}): Tensor {
  const maxElements = limits.maxElements ?? DEFAULT_MAX_ELEMENTS
  if (!isPlainObject(obj)) return fail('tensor must be a map')
  const keys = Object.keys(obj)
  if (keys.length !== 3 || !('dtype' in obj && 'dims' in obj && 'data' in obj)) {
    fail(`tensor must have exactly dtype, dims, data; got ${keys.join(',')}`)
  }
  const { dtype, dims, data } = obj
  if (typeof dtype !== 'string' || !(DTYPES as readonly string[]).includes(dtype)) {
    fail(`unknown dtype ${String(dtype).slice(0, 32)}`)
  }
  const dt = dtype as DType
  const n = checkDims(dims, maxElements)
  if (!(data instanceof Uint8Array)) return fail('data must be bytes')
  const width = BYTES_PER_ELEMENT[dt]
  if (data.byteLength !== n * width) fail(`data is ${data.byteLength} bytes, expected ${n * width}`)
  if (dt === 'bool' && data.some((b) => b > 1)) fail('bool data must be 0 or 1')
  let bytes = LITTLE_ENDIAN || width === 1 ? data : swapped(data, width)
  // copy unaligned views (new Uint8Array copies; Buffer#slice would not)
  if (bytes.byteOffset % width !== 0) bytes = new Uint8Array(bytes)
  return { dtype: dt, dims: [...(dims as number[])], data: new CTORS[dt](bytes.buffer, bytes.byteOffset, n) }
}

function checkName(name: string): void {
  if (name.length === 0 || name.length > MAX_NAME_LENGTH) {
    fail(`tensor name must be 1..${MAX_NAME_LENGTH} chars, got ${name.length}`)
  }
}

/** Encodes named tensors with names in sorted order (dag-cbor sorts map keys anyway). */
export function encodeTensors(named: NamedTensors): EncodedTensors {
  const names = Object.keys(named).sort()
  if (names.length > MAX_TENSORS) fail(`${names.length} tensors exceed ${MAX_TENSORS}`)
  const out: EncodedTensors = {}
  for (const name of names) {
    checkName(name)
    out[name] = encodeTensor(named[name]!)
  }
  return out
}

/** Strictly decodes untrusted named tensors. */
export function decodeTensors(obj: unknown, limits: TensorLimits = {}): NamedTensors {
  if (!isPlainObject(obj)) return fail('tensors must be a map')
  const names = Object.keys(obj)
  const max = limits.maxTensors ?? MAX_TENSORS
  if (names.length > max) fail(`${names.length} tensors exceed ${max}`)
  const out: NamedTensors = {}
  for (const name of names.sort()) {
    checkName(name)
    try {
      out[name] = decodeTensor(obj[name], limits)
    } catch (err) {
      throw new InvalidTensorError(`tensor '${name.slice(0, 32)}': ${(err as Error).message}`)
    }
  }
  return out
}

/** CIDv1 dag-cbor sha2-256 of the canonical encoding. */
export async function tensorsCid(named: NamedTensors): Promise<CID> {
  const bytes = dagCbor.encode(encodeTensors(named))
  return CID.createV1(dagCbor.code, await sha256.digest(bytes))
}

export interface TensorComparison {
  equal: boolean
  /** Largest |a - b| over all elements; Infinity when names, dtypes or dims differ. */
  maxAbsDiff: number
}

/** Compares like numpy `allclose` (|a-b| <= atol + rtol*|b|), treating NaN == NaN as equal. */
export function tensorsEqualWithin(a: NamedTensors, b: NamedTensors, atol = 0, rtol = 0): TensorComparison {
  const mismatch = { equal: false, maxAbsDiff: Number.POSITIVE_INFINITY }
  const names = Object.keys(a).sort()
  const namesB = Object.keys(b).sort()
  if (names.join('\0') !== namesB.join('\0')) return mismatch
  let equal = true
  let maxAbsDiff = 0
  for (const name of names) {
    const x = a[name]!
    const y = b[name]!
    if (x.dtype !== y.dtype || x.dims.join(',') !== y.dims.join(',') || x.data.length !== y.data.length) {
      return mismatch
    }
    for (let i = 0; i < x.data.length; i++) {
      const u = Number(x.data[i])
      const v = Number(y.data[i])
      if (u === v || (Number.isNaN(u) && Number.isNaN(v))) continue
      const diff = Math.abs(u - v)
      if (!(diff <= maxAbsDiff)) maxAbsDiff = Number.isNaN(diff) ? Number.POSITIVE_INFINITY : diff
      if (!(diff <= atol + rtol * Math.abs(v))) equal = false
    }
  }
  return { equal, maxAbsDiff }
}
