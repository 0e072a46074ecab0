/**
 * A float32 tensor's values placed on a tolerance's grids (commit.ts explains them), as the bytes
 * its chunks' grid hashes cover: each value's cell as a 2-byte ordinal, or, in a chunk where some
 * cell has none (NaN, ±Infinity, exact cells, far binades), as 8 bytes.
 */
import { RUN_BATCH } from './digests.ts'

export interface Tolerance {
  atol: number
  rtol: number
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
 * A grid: the tolerance, the magnitude below which cells are atol wide, and each binade's cells.
 * For 2-byte ordinals, per binary exponent e (bits 23–30 of a float32): `ord` holds [offset, width,
 * add, shift], so that a value x's cells are m·(base[e] + floor(q)) and m·(base[e] + floor(q +
 * shift)) with q = (m·x − offset) / width + add, where m is −1 for a negative value at a `signed`
 * exponent and 1 otherwise: atol-wide cells (round(x / atol), base 0) below the limit, each
 * binade's cells from its base up, past every cell below it. `ok` is 0 where cells have no 2-byte
 * ordinal: NaN, ±Infinity, exact cells, past ORD.
 */
interface Grid {
  atol: number
  rtol: number
  limit: number
  pow: Float64Array
  width: Float64Array
  ord: Float64Array
  base: Float64Array
  signed: Int32Array
  ok: Int32Array
}

let lastGrid: Grid | undefined // checks ask for one grid chunk after chunk

function gridOf(atol: number, rtol: number): Grid {
  if (lastGrid && Object.is(lastGrid.atol, atol) && Object.is(lastGrid.rtol, rtol)) return lastGrid
  const limit = absLimit(atol, rtol)
  const b = binades(atol, rtol)
  lastGrid = { atol, rtol, limit, ...b, ...ordinals(atol, limit, b.pow, b.width) }
  return lastGrid
}

/** The largest ordinal a chunk's cells may take to be hashed as 2 bytes each. */
const ORD = 32767
const ORD_STRIDE = 4

/** Grid's ordinals: the same cells as cellsInto's, numbered in order. */
function ordinals(atol: number, limit: number, pow: Float64Array, width: Float64Array) {
  const ord = new Float64Array(256 * ORD_STRIDE)
  const base = new Float64Array(256)
  const signed = new Int32Array(256)
  const ok = new Int32Array(256) // e = 255 (NaN, ±Infinity) stays 0
  let next = limit === 0 ? 1 : Math.floor(limit / atol + 0.5) + 2 // past |round(x / atol)| for |x| < limit
  let fits = next - 1 <= ORD
  for (let e = 0; e < 255; e++) {
    // below the limit: a whole binade (subnormals only where the limit is a normal number)
    const below = e === 0 ? limit >= 2 ** -126 : pow[e]! < limit
    if (below) {
      ord.set([0, atol, 0.5, -0.5], e * ORD_STRIDE)
      ok[e] = 1
      continue
    }
    if (width[e] === 0 || e === 0) continue // exact cells: their bits, no ordinal
    const end = next + Math.floor(pow[e]! / width[e]!) + 2 // floor(d) and floor(d + 0.5), d < 2^e / width
    fits &&= end - 1 <= ORD
    ord.set([pow[e]!, width[e]!, 0, 0.5], e * ORD_STRIDE)
    base[e] = next
    signed[e] = 1
    ok[e] = fits ? 1 : 0
    next = end
  }
  return { ord, base, signed, ok }
}

/**
 * The cells of data[from, to) on both grids as 2-byte ordinals, into coarse and shifted from `at`.
 * Per grid, whether every cell had one (the bits COARSE_OK, SHIFTED_OK): if not, that grid's chunk
 * is hashed as cellsInto's 8 bytes a value, so each chunk of cells has one encoding. Branch-free
 * per value: a version with branches was half as fast again.
 */
function ordinalsInto(
  data: Float32Array,
  bits: Uint32Array,
  from: number,
  to: number,
  g: Grid,
  out: Cells,
  at: number,
): number {
  const { ord, base, signed, ok: fits } = g
  const coarse = out[0]
  const shifted = out[1]
  let okC = true
  let okS = true
  let ok = 1
  for (let i = from, j = at; i < to; i++, j++) {
    const u = bits[i]!
    const e = (u >>> 23) & 0xff
    const k = e * ORD_STRIDE
    const m = 1 - 2 * ((u >>> 31) & signed[e]!)
    const q = (data[i]! * m - ord[k]!) / ord[k + 1]! + ord[k + 2]!
    const b = base[e]!
    const c = m * (b + Math.floor(q - 0))
    const s = m * (b + Math.floor(q + ord[k + 3]!))
    ok &= fits[e]!
    if (c > ORD || c < -ORD) okC = false // only where atol is tiny against the limit
    if (s > ORD || s < -ORD) okS = false
    coarse[j] = c
    shifted[j] = s
  }
  return ok === 1 ? (okC ? COARSE_OK : 0) | (okS ? SHIFTED_OK : 0) : 0
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

const COARSE_OK = 1
const SHIFTED_OK = 2
const BOTH_OK = 3

/** Per grid, a batch's ordinals. */
type Cells = readonly [Int16Array, Int16Array]
/** A batch's ordinals on both grids, kept for the next tensor rather than allocated and zeroed anew. */
let spareCells: Cells | undefined

/** The bytes each grid's hash covers, for chunks [from, to) of `data` (RUN_BATCH at most). */
export type GridRuns = (from: number, to: number) => [Uint8Array[], Uint8Array[]]

/**
 * Grid runs of `data`'s chunks of `chunk` values, for runDigests: the runs a call returns hold
 * until the next call. `done` gives the buffers back.
 */
export function gridRuns(
  data: Float32Array,
  tol: Tolerance,
  chunk: number,
): { runs: GridRuns; done: () => void } {
  const g = gridOf(tol.atol, tol.rtol)
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length)
  const size = RUN_BATCH * chunk
  let cells = spareCells?.[0].length === size ? spareCells : undefined
  cells ??= [new Int16Array(size), new Int16Array(size)]
  spareCells = undefined // a concurrent call makes its own
  const runs: GridRuns = (from, to) => {
    const out: [Uint8Array[], Uint8Array[]] = [[], []]
    for (let k = from; k < to; k++) {
      const start = k * chunk
      const end = Math.min(start + chunk, data.length)
      const [coarse, shifted] = chunkBytes(data, bits, start, end, g, cells, (k - from) * chunk)
      out[0].push(coarse)
      out[1].push(shifted)
    }
    return out
  }
  const done = () => {
    spareCells = cells
  }
  return { runs, done }
}

/** The grid bytes of a few values (one chunk's), in arrays of their own. */
export function gridBytes(values: Float32Array, tol: Tolerance): [Uint8Array, Uint8Array] {
  const n = values.length
  const bits = new Uint32Array(values.buffer, values.byteOffset, n)
  const cells = [new Int16Array(n), new Int16Array(n)] as const
  return chunkBytes(values, bits, 0, n, gridOf(tol.atol, tol.rtol), cells, 0)
}

/**
 * The bytes each grid's hash covers for data[from, to): its ordinals (written into `cells` from
 * `at`, and viewed there) where every cell has one, else its cells at 8 bytes a value.
 */
function chunkBytes(
  data: Float32Array,
  bits: Uint32Array,
  from: number,
  to: number,
  g: Grid,
  cells: Cells,
  at: number,
): [Uint8Array, Uint8Array] {
  const ok = ordinalsInto(data, bits, from, to, g, cells, at)
  const n = to - from
  const wide = ok === BOTH_OK ? undefined : ([new Uint8Array(n * 8), new Uint8Array(n * 8)] as const)
  if (wide) cellsInto(data, from, to, g, wide[0], wide[1])
  return [
    ok & COARSE_OK ? new Uint8Array(cells[0].buffer, 2 * at, 2 * n) : wide![0],
    ok & SHIFTED_OK ? new Uint8Array(cells[1].buffer, 2 * at, 2 * n) : wide![1],
  ]
}
