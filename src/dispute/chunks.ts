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
import { gridBytes, gridRuns, type Tolerance } from './cells.ts'
import { digestOf, runDigests, sha256Of } from './digests.ts'
import { HASH_BYTES, type Part } from './hash.ts'
import { sameBytes } from './merkle.ts'

export const CHUNK = 1024

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

/** A tensor's data as little-endian bytes. */
export const tensorBytes = (t: Tensor): Uint8Array => encodeTensor(t).data

export const chunkCount = (dims: readonly number[]): number => Math.ceil(elementCount(dims) / CHUNK)

/**
 * Chunk hashes of a tensor's bytes and, under a tolerance, of its cells on both grids (other dtypes
 * are compared exactly: their cells are their bytes). Cells are made a batch of chunks at a time.
 */
export async function chunkHashes(t: Tensor, tol?: Tolerance): Promise<ChunkHashes> {
  const n = chunkCount(t.dims)
  const bytes = tensorBytes(t)
  const run = CHUNK * BYTES_PER_ELEMENT[t.dtype]
  const exactRuns = (from: number, to: number) => bytes.subarray(from * run, to * run)
  const head = { dtype: t.dtype, dims: [...t.dims] }
  if (!tol) {
    const [exact] = await runDigests(n, [run], (from, to) => [exactRuns(from, to)])
    return { ...head, exact: exact! }
  }
  if (t.dtype !== 'float32') {
    const [exact, coarse, shifted] = await runDigests(n, [run, run, run], (from, to) => {
      const b = exactRuns(from, to)
      return [b, b, b]
    })
    return { ...head, exact: exact!, coarse: coarse!, shifted: shifted! }
  }
  const grid = gridRuns(t.data as Float32Array, tol, CHUNK)
  try {
    const [exact, coarse, shifted] = await runDigests(n, [run, 0, 0], (from, to) => [
      exactRuns(from, to),
      ...grid.runs(from, to),
    ])
    return { ...head, exact: exact!, coarse: coarse!, shifted: shifted! }
  } finally {
    grid.done()
  }
}

/** digest(tag, ...head, chunks.length, ...chunks), without spreading the chunks into a call. */
const chunksDigest = (tag: string, head: readonly Part[], chunks: readonly Uint8Array[]) =>
  digestOf(tag, [...head, chunks.length].concat(chunks))

export const exactDigest = (dtype: DType, dims: readonly number[], chunks: readonly Uint8Array[]) =>
  chunksDigest('pc-dispute/tensor-exact', [dtype, dims.length, ...dims], chunks)

/** The coarse (or, `shifted`, the shifted-grid) hash of a tensor from its chunk hashes. */
export const coarseDigest = (
  tol: Tolerance,
  dtype: DType,
  dims: readonly number[],
  chunks: readonly Uint8Array[],
  shifted = false,
) => {
  const tag = shifted ? 'pc-dispute/tensor-shifted' : 'pc-dispute/tensor-coarse'
  return chunksDigest(tag, [tol.atol, tol.rtol, dtype, dims.length, ...dims], chunks)
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
  if (!sameBytes(await sha256Of(bytes), h.exact[index]))
    throw new DisputeCommitmentError(`chunk ${index} does not hash to its committed chunk hash`)
  const own = new Uint8Array(bytes) // aligned, and ours
  const values = new ARRAY_TYPES[h.dtype](own.buffer, 0, n)
  if (tol) {
    const cells = h.dtype === 'float32' ? gridBytes(values as Float32Array, tol) : [own, own]
    const [coarse, shifted] = await Promise.all(cells.map(sha256Of))
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
