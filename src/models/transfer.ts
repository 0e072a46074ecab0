/**
 * Messages of `/peer-compute/model/1.0.0`: the fetcher asks for a manifest (size, chunk size, one
 * sha2-256 digest per chunk), then for ranges of chunks. Every frame has a size limit and an exact shape.
 */
import { sha256 } from 'multiformats/hashes/sha2'
import { encodeFrame, type Frame, parseBody } from '../net/frame.ts'
import { concat } from '../shared/bytes.ts'
import { MalformedFrameError, ModelTooLargeError } from '../shared/errors.ts'

export const MIN_CHUNK_SIZE = 16 * 1024
export const MAX_CHUNK_SIZE = 4 * 1024 * 1024
/** Measured best of 64 KiB / 256 KiB / 1 MiB between two tabs (bench/README.md). */
export const DEFAULT_CHUNK_SIZE = 256 * 1024
/** Chunks one `get` may ask for. */
export const MAX_RANGE = 64
export const MAX_REQUEST_BYTES = 512
export const MAX_ERROR_BYTES = 4 * 1024
export const MAX_REASON_LENGTH = 512
const DIGEST = 32
/** Room for the map keys and integers around a chunk's bytes. */
const CHUNK_OVERHEAD = 64

export const ERROR_CODES = ['unknown-model', 'busy', 'bad-request', 'internal'] as const
export type TransferErrorCode = (typeof ERROR_CODES)[number]

export type ManifestRequest = { t: 'get-manifest'; v: 1; cid: string; chunkSize: number }
export type Manifest = {
  t: 'manifest'
  v: 1
  cid: string
  size: number
  chunkSize: number
  digests: Uint8Array
}
export type RangeRequest = { t: 'get'; v: 1; from: number; count: number }
export type ChunkMessage = { t: 'chunk'; v: 1; index: number; bytes: Uint8Array }
export type TransferError = { t: 'error'; v: 1; code: TransferErrorCode; reason: string }
export type TransferMessage = ManifestRequest | Manifest | RangeRequest | ChunkMessage | TransferError

/** Largest manifest frame for models up to `maxModelBytes` in chunks of `chunkSize`. */
export const manifestLimit = (maxModelBytes: number, chunkSize: number) =>
  chunkCount(maxModelBytes, chunkSize) * DIGEST + 1024
export const chunkLimit = (chunkSize: number) => chunkSize + CHUNK_OVERHEAD
export const chunkCount = (size: number, chunkSize: number) => Math.ceil(size / chunkSize)
/** Byte length of chunk `index` of a file of `size` bytes. */
export const chunkLength = (size: number, chunkSize: number, index: number) =>
  Math.min(chunkSize, size - index * chunkSize)

export const isChunkSize = (n: unknown): n is number =>
  Number.isSafeInteger(n) &&
  (n as number) >= MIN_CHUNK_SIZE &&
  (n as number) <= MAX_CHUNK_SIZE &&
  ((n as number) & ((n as number) - 1)) === 0

export function encodeTransfer(msg: TransferMessage, limit: number): Uint8Array {
  return encodeFrame(msg, limit)
}

const ascii = (s: string) => Array.from(s, (c) => c.charCodeAt(0))
/** CBOR head (major type, argument) in its shortest form, as dag-cbor writes it. */
function cborHead(major: number, n: number): number[] {
  const m = major << 5
  if (n < 24) return [m | n]
  if (n < 0x100) return [m | 24, n]
  if (n < 0x10000) return [m | 25, n >> 8, n & 0xff]
  return [m | 26, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]
}
function varint(n: number): number[] {
  const out: number[] = []
  for (; n >= 0x80; n = Math.floor(n / 0x80)) out.push((n % 0x80) | 0x80)
  out.push(n)
  return out
}

/**
 * The same bytes as `encodeTransfer({ t: 'chunk', v: 1, index, bytes })`, with one copy of the chunk:
 * dag-cbor orders keys by length, then bytewise, so the map is t, v, bytes, index.
 */
export function encodeChunkFrame(index: number, bytes: Uint8Array): Uint8Array {
  if (!Number.isSafeInteger(index) || index < 0 || index >= 2 ** 32) throw new RangeError('chunk index')
  const head = [...CHUNK_HEAD, ...cborHead(2, bytes.byteLength)]
  const tail = [...INDEX_KEY, ...cborHead(0, index)]
  const prefix = varint(head.length + bytes.byteLength + tail.length)
  const out = new Uint8Array(prefix.length + head.length + bytes.byteLength + tail.length)
  out.set(prefix)
  out.set(head, prefix.length)
  out.set(bytes, prefix.length + head.length)
  out.set(tail, prefix.length + head.length + bytes.byteLength)
  return out
}

const CHUNK_HEAD = [
  0xa4,
  0x61,
  ...ascii('t'),
  0x65,
  ...ascii('chunk'),
  0x61,
  ...ascii('v'),
  0x01,
  0x65,
  ...ascii('bytes'),
]
const INDEX_KEY = [0x65, ...ascii('index')]

/** A chunk's bytes as views of the received data, in order: only the fast parser makes one. */
export class ChunkParts {
  constructor(readonly list: Uint8Array[]) {}
}

/** Byte access across a body's parts. */
class Bytes {
  readonly length: number
  private readonly starts: number[] = []
  constructor(private readonly parts: Uint8Array[]) {
    let n = 0
    for (const p of parts) {
      this.starts.push(n)
      n += p.byteLength
    }
    this.length = n
  }
  at(i: number): number | undefined {
    for (let k = this.parts.length - 1; k >= 0; k--)
      if (i >= this.starts[k]!) return this.parts[k]![i - this.starts[k]!]
    return undefined
  }
  has(at: number, want: number[]): boolean {
    return at + want.length <= this.length && want.every((b, i) => this.at(at + i) === b)
  }
  /** Views of bytes [from, to). */
  range(from: number, to: number): Uint8Array[] {
    const out: Uint8Array[] = []
    this.parts.forEach((p, k) => {
      const a = Math.max(from - this.starts[k]!, 0)
      const b = Math.min(to - this.starts[k]!, p.byteLength)
      if (a < b) out.push(p.subarray(a, b))
    })
    return out
  }
  /** A CBOR head of `major` in its shortest form at `at`: [value, length], or undefined. */
  head(at: number, major: number): [number, number] | undefined {
    const b = this.at(at)
    if (b === undefined || b >> 5 !== major) return undefined
    const info = b & 0x1f
    if (info < 24) return [info, 1]
    const n = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : 0
    if (n === 0 || at + 1 + n > this.length) return undefined
    let v = 0
    for (let i = 1; i <= n; i++) v = v * 256 + this.at(at + i)!
    return v < (n === 1 ? 24 : n === 2 ? 0x100 : 0x10000) ? undefined : [v, 1 + n]
  }
}

/**
 * Decodes a frame body. A chunk frame laid out exactly as `encodeChunkFrame` writes it is read in
 * place: its bytes stay views of the received data (`ChunkParts`), so the fetcher copies them once,
 * into the model. Anything else goes to dag-cbor.
 */
export function parseTransferBody(parts: Uint8Array[]): Frame {
  const b = new Bytes(parts)
  if (b.has(0, CHUNK_HEAD)) {
    const len = b.head(CHUNK_HEAD.length, 2)
    const start = CHUNK_HEAD.length + (len?.[1] ?? 0)
    const end = start + (len?.[0] ?? 0)
    const index = len && b.has(end, INDEX_KEY) ? b.head(end + INDEX_KEY.length, 0) : undefined
    if (index && end + INDEX_KEY.length + index[1] === b.length)
      return { t: 'chunk', v: 1, bytes: new ChunkParts(b.range(start, end)), index: index[0] }
  }
  return parseBody(concat(parts))
}

const malformed = (path: string, why: string): never => {
  throw new MalformedFrameError(`${path}: ${why}`)
}
const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0
const isCidString = (x: unknown): x is string => typeof x === 'string' && /^b[a-z2-7]{20,100}$/.test(x)

function envelope(frame: Frame, t: TransferMessage['t'], keys: string[]): void {
  if (frame.t !== t) malformed('frame.t', `expected '${t}', got '${String(frame.t).slice(0, 32)}'`)
  if (Object.keys(frame).sort().join() !== ['t', 'v', ...keys].sort().join())
    malformed('frame', `'${t}' must have exactly t, v, ${keys}`)
  if (frame.v !== 1) malformed('frame.v', 'must be 1')
}

export function parseManifestRequest(frame: Frame): ManifestRequest {
  envelope(frame, 'get-manifest', ['cid', 'chunkSize'])
  if (!isCidString(frame.cid)) malformed('get-manifest.cid', 'must be a base32 CID string')
  if (!isChunkSize(frame.chunkSize))
    malformed('get-manifest.chunkSize', 'must be a power of two, 16 KiB–4 MiB')
  return frame as ManifestRequest
}

/** Checks a manifest against what we asked for; the digests stay untrusted until the whole file verifies. */
export function parseManifest(
  frame: Frame,
  want: { cid: string; chunkSize: number; maxBytes: number },
): Manifest {
  envelope(frame, 'manifest', ['cid', 'size', 'chunkSize', 'digests'])
  if (frame.cid !== want.cid) malformed('manifest.cid', 'is not the CID asked for')
  if (frame.chunkSize !== want.chunkSize) malformed('manifest.chunkSize', 'is not the chunk size asked for')
  if (!isCount(frame.size) || frame.size === 0) malformed('manifest.size', 'must be a positive integer')
  const size = frame.size as number
  if (size > want.maxBytes)
    throw new ModelTooLargeError(`model ${want.cid} is ${size} bytes, over the ${want.maxBytes}-byte limit`)
  if (!(frame.digests instanceof Uint8Array)) malformed('manifest.digests', 'must be bytes')
  if ((frame.digests as Uint8Array).byteLength !== chunkCount(size, want.chunkSize) * DIGEST)
    malformed('manifest.digests', 'must hold one 32-byte digest per chunk')
  return frame as Manifest
}

export function parseRangeRequest(
  frame: Frame,
  manifest: Pick<Manifest, 'size' | 'chunkSize'>,
): RangeRequest {
  envelope(frame, 'get', ['from', 'count'])
  const n = chunkCount(manifest.size, manifest.chunkSize)
  if (!isCount(frame.from) || (frame.from as number) >= n) malformed('get.from', `must be below ${n}`)
  if (!isCount(frame.count) || frame.count === 0 || (frame.count as number) > MAX_RANGE)
    malformed('get.count', `must be 1–${MAX_RANGE}`)
  if ((frame.from as number) + (frame.count as number) > n) malformed('get.count', 'runs past the last chunk')
  return frame as RangeRequest
}

/** A received chunk: its index and its bytes, possibly in several views (digest not yet checked). */
export interface ReceivedChunk {
  index: number
  parts: Uint8Array[]
  byteLength: number
}

/** Checks a chunk's shape, index and length; its digest is checked with `chunkMatches`. */
export function parseChunk(frame: Frame, manifest: Manifest, index: number): ReceivedChunk {
  envelope(frame, 'chunk', ['index', 'bytes'])
  if (frame.index !== index) malformed('chunk.index', `expected ${index}, got ${String(frame.index)}`)
  const bytes = frame.bytes
  const parts = bytes instanceof ChunkParts ? bytes.list : bytes instanceof Uint8Array ? [bytes] : undefined
  if (parts == null) return malformed('chunk.bytes', 'must be bytes')
  const want = chunkLength(manifest.size, manifest.chunkSize, index)
  const got = parts.reduce((n, p) => n + p.byteLength, 0)
  if (got !== want) malformed('chunk.bytes', `must be ${want} bytes`)
  return { index, parts, byteLength: got }
}

export function parseTransferError(frame: Frame): TransferError {
  envelope(frame, 'error', ['code', 'reason'])
  if (!(ERROR_CODES as readonly unknown[]).includes(frame.code)) malformed('error.code', 'unknown code')
  if (typeof frame.reason !== 'string' || frame.reason.length > MAX_REASON_LENGTH)
    malformed('error.reason', `must be a string of at most ${MAX_REASON_LENGTH} chars`)
  return frame as TransferError
}

/** One sha2-256 digest per chunk, concatenated. */
export async function chunkDigests(bytes: Uint8Array, chunkSize: number): Promise<Uint8Array> {
  const n = chunkCount(bytes.byteLength, chunkSize)
  const out = new Uint8Array(n * DIGEST)
  for (let i = 0; i < n; i++) {
    const d = await sha256.digest(bytes.subarray(i * chunkSize, (i + 1) * chunkSize))
    out.set(d.digest, i * DIGEST)
  }
  return out
}

/** Whether `bytes` hash to the manifest's digest for chunk `index`. */
export async function chunkMatches(manifest: Manifest, index: number, bytes: Uint8Array): Promise<boolean> {
  const want = manifest.digests.subarray(index * DIGEST, (index + 1) * DIGEST)
  if (bytes.byteLength !== chunkLength(manifest.size, manifest.chunkSize, index)) return false
  const got = (await sha256.digest(bytes)).digest
  return got.every((b, i) => b === want[i])
}
