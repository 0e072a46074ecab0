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
import { digestOf, RUN_BATCH, runDigests, sha256Of } from './digests.ts'
import { HASH_BYTES, type Part } from './hash.ts'
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

/** A grid: the tolerance, the magnitude below which cells are atol wide, and each binade's cells. */
interface Grid {
  atol: number
  rtol: number
  limit: number
  pow: Float64Array
  width: Float64Array
}

let lastGrid: Grid | undefined // checks ask for one grid chunk after chunk

function gridOf(atol: number, rtol: number): Grid {
  if (lastGrid && Object.is(lastGrid.atol, atol) && Object.is(lastGrid.rtol, rtol)) return lastGrid
  lastGrid = { atol, rtol, limit: absLimit(atol, rtol), ...binades(atol, rtol) }
  return lastGrid
}

/**
 * Each value's grid cell as 8 bytes (little-endian hosts). Values in one cell are within
 * atol + rtol·min(|a|, |b|) of each other, up to one rounding of the division. `shifted` moves
 * every grid line by half a cell: two values closer than that share a cell on one grid or the other.
 */
export function quantise(data: Float32Array, atol: number, rtol: number, shifted = false): Uint8Array {
  const cells = [new Uint8Array(data.length * 8), new Uint8Array(data.length * 8)] as const
  cellsInto(data, 0, data.length, gridOf(atol, rtol), cells[0], cells[1])
  return cells[shifted ? 1 : 0]
}

/**
 * The cells of data[from, to) on the grid (into `coarse`) and on the shifted grid (into `shifted`),
 * 8 bytes a value, in one pass: the per-value branches are most of the cost.
 */
function cellsInto(
  data: Float32Array,
  from: number,
  to: number,
  g: Grid,
  coarse: Uint8Array,
  shifted: Uint8Array,
): void {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length)
  const n = to - from
  const c64 = new Float64Array(coarse.buffer, coarse.byteOffset, n)
  const c32 = new Uint32Array(coarse.buffer, coarse.byteOffset, 2 * n)
  const s64 = new Float64Array(shifted.buffer, shifted.byteOffset, n)
  const s32 = new Uint32Array(shifted.buffer, shifted.byteOffset, 2 * n)
  const { atol, limit, pow, width } = g
  for (let i = from, j = 0; i < to; i++, j++) {
    const x = data[i]!
    if (Math.abs(x) < limit) {
      // the common case first: NaN and ±Infinity never pass this test
      const q = x / atol + 0.5
      c64[j] = Math.floor(q - 0) + ABS_TAG
      s64[j] = Math.floor(q - 0.5) + ABS_TAG
      continue
    }
    const u = bits[i]!
    const e = (u >>> 23) & 0xff
    if (e === 255) {
      if (u & 0x7fffff) {
        c32[2 * j] = s32[2 * j] = 0
        c32[2 * j + 1] = s32[2 * j + 1] = NAN
      } else c64[j] = s64[j] = x
    } else if (e === 0 || width[e] === 0) {
      c32[2 * j] = s32[2 * j] = (u & 0x7fffffff) === 0 ? 0 : u & (e ? 0x7fffff : 0xffffffff) // ±0 alike
      c32[2 * j + 1] = s32[2 * j + 1] = e === 0 ? EXACT : (REL | ((u >>> 31) << 15) | (e << 7)) >>> 0
    } else {
      const d = (Math.abs(x) - pow[e]!) / width[e]!
      c32[2 * j] = Math.floor(d + 0)
      s32[2 * j] = Math.floor(d + 0.5)
      c32[2 * j + 1] = s32[2 * j + 1] = (REL | ((u >>> 31) << 15) | (e << 7)) >>> 0
    }
  }
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
  const data = t.data as Float32Array
  const grid = gridOf(tol.atol, tol.rtol)
  const cells = takeCells()
  try {
    const [exact, coarse, shifted] = await runDigests(n, [run, CHUNK * 8, CHUNK * 8], (from, to) => {
      const end = Math.min(to * CHUNK, data.length)
      cellsInto(data, from * CHUNK, end, grid, cells[0], cells[1])
      const size = (end - from * CHUNK) * 8
      return [exactRuns(from, to), cells[0].subarray(0, size), cells[1].subarray(0, size)]
    })
    return { ...head, exact: exact!, coarse: coarse!, shifted: shifted! }
  } finally {
    spareCells = cells
  }
}

type Cells = readonly [Uint8Array, Uint8Array]
/** A batch's cells on both grids (1 MiB), kept for the next tensor rather than allocated and zeroed anew. */
let spareCells: Cells | undefined
function takeCells(): Cells {
  const cells = spareCells ?? [new Uint8Array(RUN_BATCH * CHUNK * 8), new Uint8Array(RUN_BATCH * CHUNK * 8)]
  spareCells = undefined // a concurrent call makes its own
  return cells
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
    const cells = [own, own]
    if (h.dtype === 'float32') {
      cells[0] = new Uint8Array(n * 8)
      cells[1] = new Uint8Array(n * 8)
      cellsInto(values as Float32Array, 0, n, gridOf(tol.atol, tol.rtol), cells[0], cells[1])
    }
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
