/**
 * Tensors hashed in chunks of CHUNK values, exactly (their bytes) and, under a tolerance, on two
 * grids (their cells on a grid and on the same grid shifted by half a cell), so two parties whose
 * coarse hashes differ can find the few chunks that do and compare only those. commit.ts explains
 * the grids.
 */
import { DisputeAnswerError, DisputeCommitmentError, DisputeProofError } from '../shared/errors.ts'
import {
  ARRAY_TYPES,
  BYTES_PER_ELEMENT,
  DTYPES,
  type DType,
  elementCount,
  type Tensor,
  type TensorData,
} from '../shared/tensor.ts'
import { encodeTensor } from '../shared/tensor-codec.ts'
import { digest, HASH_BYTES, sha256 } from './hash.ts'
import { sameBytes } from './merkle.ts'

export const CHUNK = 1024

export interface Tolerance {
  atol: number
  rtol: number
}

/** A tensor's chunk hashes, which its exact (and coarse and shifted) hashes digest. */
export interface ChunkHashes {
  dtype: DType
  dims: number[]
  exact: Uint8Array[]
  /** Under a tolerance rule: hashes of each chunk's grid cells. */
  coarse?: Uint8Array[]
  /** Under a tolerance rule: the same on the grid shifted by half a cell. */
  shifted?: Uint8Array[]
}

/** The hashes a commitment holds for one tensor. */
export interface TensorHashes {
  exact: Uint8Array
  coarse?: Uint8Array
  shifted?: Uint8Array
}

const ABS_TAG = 0 // integer-valued float64 round(x / atol), never NaN
const REL = 0xfff10000 // NaN patterns below: never an integer-valued float64
const EXACT = 0xfff20000
const NAN = 0xfff30000

/** Below this magnitude cells are atol wide; above it they follow the binade (power of two). */
function absLimit(atol: number, rtol: number): number {
  if (atol === 0) return 0
  if (rtol === 0) return Number.POSITIVE_INFINITY
  let t = 1
  while (rtol * t < atol) t *= 2
  while (t > 2 ** -149 && rtol * (t / 2) >= atol) t /= 2
  return t
}

/**
 * Each value's grid cell as 8 bytes (little-endian hosts). Values in one cell are within
 * atol + rtol·min(|a|, |b|) of each other, up to one rounding of the division. `shifted` moves
 * every grid line by half a cell: two values closer than that share a cell on one grid or the other.
 */
export function quantise(data: Float32Array, atol: number, rtol: number, shifted = false): Uint8Array {
  const half = shifted ? 0.5 : 0
  const words = new Uint32Array(data.length * 2)
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length)
  const f64 = new Float64Array(1)
  const f64Words = new Uint32Array(f64.buffer)
  const limit = absLimit(atol, rtol)
  const { pow, width } = binades(atol, rtol)
  for (let i = 0; i < data.length; i++) {
    const x = data[i]!
    const u = bits[i]!
    const e = (u >>> 23) & 0xff
    if (e === 255 || Math.abs(x) < limit) {
      f64[0] = e < 255 ? Math.floor(x / atol + 0.5 - half) + ABS_TAG : u & 0x7fffff ? Number.NaN : x
      words[2 * i] = e === 255 && u & 0x7fffff ? 0 : f64Words[0]!
      words[2 * i + 1] = e === 255 && u & 0x7fffff ? NAN : f64Words[1]!
    } else if (e === 0 || width[e] === 0) {
      words[2 * i] = (u & 0x7fffffff) === 0 ? 0 : u & (e ? 0x7fffff : 0xffffffff) // ±0 alike
      words[2 * i + 1] = e === 0 ? EXACT : (REL | ((u >>> 31) << 15) | (e << 7)) >>> 0
    } else {
      words[2 * i] = Math.floor((Math.abs(x) - pow[e]!) / width[e]! + half)
      words[2 * i + 1] = (REL | ((u >>> 31) << 15) | (e << 7)) >>> 0
    }
  }
  return new Uint8Array(words.buffer)
}

/** Per binary exponent: 2^e, and the cell width atol + rtol·2^e (0 where a cell is narrower than an ulp). */
function binades(atol: number, rtol: number): { pow: Float64Array; width: Float64Array } {
  const pow = new Float64Array(256)
  const width = new Float64Array(256)
  const f32 = new Float32Array(1)
  const f32Bits = new Uint32Array(f32.buffer)
  for (let e = 1; e < 255; e++) {
    f32Bits[0] = e << 23 // 2^(e - 127), built from its bits
    pow[e] = f32[0]!
    const w = atol + rtol * pow[e]!
    width[e] = w <= pow[e]! * 2 ** -23 ? 0 : w
  }
  return { pow, width }
}

/** A tensor's data as little-endian bytes. */
export const tensorBytes = (t: Tensor): Uint8Array => encodeTensor(t).data

export const chunkCount = (dims: readonly number[]): number => Math.ceil(elementCount(dims) / CHUNK)

/** Grid cells of a tensor's data: quantised floats; other dtypes are compared exactly. */
const cellsOf = (t: Tensor, tol: Tolerance, shifted: boolean): { bytes: Uint8Array; width: number } =>
  t.dtype === 'float32'
    ? { bytes: quantise(t.data as Float32Array, tol.atol, tol.rtol, shifted), width: 8 }
    : { bytes: tensorBytes(t), width: BYTES_PER_ELEMENT[t.dtype] }

export async function chunkHashes(t: Tensor, tol?: Tolerance): Promise<ChunkHashes> {
  const n = chunkCount(t.dims)
  const hashes = ({ bytes, width }: { bytes: Uint8Array; width: number }) =>
    Promise.all(
      Array.from({ length: n }, (_, i) => sha256(bytes.subarray(i * CHUNK * width, (i + 1) * CHUNK * width))),
    )
  const exact = await hashes({ bytes: tensorBytes(t), width: BYTES_PER_ELEMENT[t.dtype] })
  if (!tol) return { dtype: t.dtype, dims: [...t.dims], exact }
  const coarse = await hashes(cellsOf(t, tol, false))
  const shifted = await hashes(cellsOf(t, tol, true))
  return { dtype: t.dtype, dims: [...t.dims], exact, coarse, shifted }
}

export const exactDigest = (dtype: DType, dims: readonly number[], chunks: readonly Uint8Array[]) =>
  digest('pc-dispute/tensor-exact', dtype, dims.length, ...dims, chunks.length, ...chunks)

/** The coarse (or, `shifted`, the shifted-grid) hash of a tensor from its chunk hashes. */
export const coarseDigest = (
  tol: Tolerance,
  dtype: DType,
  dims: readonly number[],
  chunks: readonly Uint8Array[],
  shifted = false,
) => {
  const tag = shifted ? 'pc-dispute/tensor-shifted' : 'pc-dispute/tensor-coarse'
  return digest(tag, tol.atol, tol.rtol, dtype, dims.length, ...dims, chunks.length, ...chunks)
}

/** A tensor's hashes from its chunk hashes. */
export async function tensorHashes(h: ChunkHashes, tol?: Tolerance): Promise<TensorHashes> {
  const exact = await exactDigest(h.dtype, h.dims, h.exact)
  if (!tol) return { exact }
  const coarse = await coarseDigest(tol, h.dtype, h.dims, h.coarse!)
  return { exact, coarse, shifted: await coarseDigest(tol, h.dtype, h.dims, h.shifted!, true) }
}

const isHashList = (x: unknown, n: number): x is Uint8Array[] =>
  Array.isArray(x) && x.length === n && x.every((h) => h instanceof Uint8Array && h.byteLength === HASH_BYTES)

/** Throws unless `h` is well formed and digests to the `committed` hashes. */
export async function checkChunkHashes(
  h: ChunkHashes,
  committed: TensorHashes,
  tol?: Tolerance,
): Promise<void> {
  const dims = h?.dims
  const ok =
    (DTYPES as readonly unknown[]).includes(h?.dtype) &&
    Array.isArray(dims) &&
    dims.length <= 8 &&
    dims.every((d) => Number.isSafeInteger(d) && d >= 0) &&
    isHashList(h.exact, chunkCount(dims)) &&
    (!tol || (isHashList(h.coarse, chunkCount(dims)) && isHashList(h.shifted, chunkCount(dims))))
  if (!ok) throw new DisputeAnswerError('malformed chunk hashes')
  const got = await tensorHashes(h, tol)
  const same = (k: keyof TensorHashes) => sameBytes(got[k], committed[k])
  if (!same('exact') || (tol && !(same('coarse') && same('shifted'))))
    throw new DisputeProofError('chunk hashes do not digest to the committed tensor hashes')
}

/** Chunks that differ on both grids (exactly, without a tolerance); all of them when the shapes differ. */
export function differingChunks(a: ChunkHashes, b: ChunkHashes): number[] {
  const all = Array.from({ length: Math.max(a.exact.length, b.exact.length) }, (_, i) => i)
  if (a.dtype !== b.dtype || a.dims.join() !== b.dims.join()) return all
  const differ = (x?: Uint8Array[], y?: Uint8Array[]) => (i: number) => !sameBytes(x?.[i], y?.[i])
  if (!a.coarse || !b.coarse) return all.filter(differ(a.exact, b.exact))
  return all.filter((i) => differ(a.coarse, b.coarse)(i) && differ(a.shifted, b.shifted)(i))
}

/** Bytes of chunk `index` of a tensor: what a party sends. */
export function chunkOf(t: Tensor, index: number): Uint8Array {
  const w = BYTES_PER_ELEMENT[t.dtype]
  return tensorBytes(t).subarray(index * CHUNK * w, (index + 1) * CHUNK * w)
}

/** Checks a received chunk against its exact and grid hashes; returns its values. */
export async function checkChunk(
  h: ChunkHashes,
  index: number,
  bytes: Uint8Array,
  tol?: Tolerance,
): Promise<TensorData> {
  const n = Math.min(CHUNK, elementCount(h.dims) - index * CHUNK)
  const w = BYTES_PER_ELEMENT[h.dtype]
  if (!(bytes instanceof Uint8Array) || n <= 0 || bytes.byteLength !== n * w)
    throw new DisputeAnswerError(`chunk ${index} has the wrong size`)
  if (!sameBytes(await sha256(bytes), h.exact[index]))
    throw new DisputeCommitmentError(`chunk ${index} does not hash to its committed chunk hash`)
  const own = new Uint8Array(bytes) // aligned, and ours
  const values = new ARRAY_TYPES[h.dtype](own.buffer, 0, n)
  if (tol) {
    const t: Tensor = { dtype: h.dtype, dims: [n], data: values }
    const coarse = await sha256(cellsOf(t, tol, false).bytes)
    const shifted = await sha256(cellsOf(t, tol, true).bytes)
    if (!sameBytes(coarse, h.coarse?.[index]) || !sameBytes(shifted, h.shifted?.[index]))
      throw new DisputeCommitmentError(`chunk ${index} does not fall in its committed grid cells`)
  }
  return values
}

/** Largest |a - b| over two chunks (Infinity if their lengths differ, NaN against a number). */
export function chunkDiff(a: TensorData, b: TensorData): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY
  let max = 0
  for (let i = 0; i < a.length; i++) {
    const x = Number(a[i])
    const y = Number(b[i])
    if (x === y || (Number.isNaN(x) && Number.isNaN(y))) continue
    const d = Math.abs(x - y)
    if (!(d <= max)) max = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d
  }
  return max
}

/** Whether every pair is within atol + rtol·max(|a|, |b|): the lenient, symmetric allclose. */
export function chunksAgree(a: TensorData, b: TensorData, tol: Tolerance): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) {
    const x = Number(a[i])
    const y = Number(b[i])
    if (x === y || (Number.isNaN(x) && Number.isNaN(y))) continue
    if (!(Math.abs(x - y) <= tol.atol + tol.rtol * Math.max(Math.abs(x), Math.abs(y)))) return false
  }
  return true
}
