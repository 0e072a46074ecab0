/**
 * Frames for `/peer-compute/job/1.1.0` and `/peer-compute/model/1.0.0`: an unsigned-varint length, then a dag-cbor map with a string `t`.
 * The decoder checks the declared length against its limit before it buffers any of the body. Bodies
 * need not be byte-canonical: CIDs and signatures are always computed over re-encoded values.
 *
 * On the wire this is @libp2p/utils' `lpStream` framing, but not its code: its reader accepts
 * non-minimal and zero-length prefixes and buffers each stream with no per-peer budget, and its writer
 * comes with that reader, which would take every message alongside ours.
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { Stream, StreamCloseEvent } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import { concat } from '../shared/bytes.ts'
import { AbortError, FrameTooLargeError, InboundLimitError, MalformedFrameError } from '../shared/errors.ts'

/** 5 varint bytes hold 35 bits, far above any frame limit. */
const MAX_VARINT_BYTES = 5

export interface Frame {
  t: string
  [field: string]: unknown
}

/** Bytes a peer may still hand us in partial frames: taken as they arrive, given back once decoded. */
export interface ByteBudget {
  /** False when `n` more bytes would pass the bound: the frame is refused. */
  take(n: number): boolean
  give(n: number): void
}

// The encoded size of each decoded frame: a frame's own limit may be below the stream's.
const sizes = new WeakMap<Frame, number>()

/** Body bytes of a frame this module decoded (0 for one it did not). */
export const frameBytes = (f: Frame): number => sizes.get(f) ?? 0

/** A chunk as libp2p streams yield it: a Uint8Array or a Uint8ArrayList (both have `subarray()`). */
export type Chunk = Uint8Array | { subarray(): Uint8Array }

function encodeVarint(n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80)
    n = Math.floor(n / 0x80)
  }
  out.push(n)
  return Uint8Array.from(out)
}

/** Encodes one frame: varint length prefix + dag-cbor body. */
export function encodeFrame(msg: Frame, maxFrameBytes = Number.POSITIVE_INFINITY): Uint8Array {
  const body = dagCbor.encode(msg)
  if (body.byteLength > maxFrameBytes) {
    throw new FrameTooLargeError(`frame '${msg.t}' is ${body.byteLength} bytes, limit ${maxFrameBytes}`)
  }
  const prefix = encodeVarint(body.byteLength)
  const out = new Uint8Array(prefix.byteLength + body.byteLength)
  out.set(prefix)
  out.set(body, prefix.byteLength)
  return out
}

/** What sending needs of a libp2p v3 stream. */
export type FrameSink = Pick<
  Stream,
  'send' | 'writableNeedsDrain' | 'status' | 'addEventListener' | 'removeEventListener'
>

export interface SendOptions {
  signal?: AbortSignal
  /** The error when the stream closes first; `cause` is the close event's error, if it had one. */
  closed(cause?: Error): Error
}

/**
 * Sends one encoded frame; resolves once the stream has handed it on and the transport has room.
 * While `send` reports the transport full it waits for the stream's next `drain` event. Not
 * `stream.onDrain()`: in @libp2p/utils 7.4.1 that keeps returning its first promise, resolved at the
 * first drain, so on a stream that has drained once (a reused one) it no longer waits.
 */
export async function sendEncoded(stream: FrameSink, bytes: Uint8Array, o: SendOptions): Promise<void> {
  if (stream.send(bytes)) return
  // The stream's own drain listener, added first, queues the resend of what it holds before we look
  // again, and that may fill the transport again.
  while (stream.writableNeedsDrain) await nextDrain(stream, o)
}

function nextDrain(stream: FrameSink, o: SendOptions): Promise<void> {
  const aborted = () => new AbortError('aborted while waiting to send')
  if (o.signal?.aborted) return Promise.reject(aborted())
  if (stream.status !== 'open') return Promise.reject(o.closed())
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      stream.removeEventListener('drain', onDrain)
      stream.removeEventListener('close', onClose)
      o.signal?.removeEventListener('abort', onAbort)
      if (err) reject(err)
      else resolve()
    }
    const onDrain = () => done()
    const onClose = (evt: StreamCloseEvent) => done(o.closed(evt.error))
    const onAbort = () => done(aborted())
    stream.addEventListener('drain', onDrain)
    stream.addEventListener('close', onClose)
    o.signal?.addEventListener('abort', onAbort)
  })
}

/** Decodes a frame body; a protocol may pass a faster parser that falls back to this one. */
export function parseBody(body: Uint8Array): Frame {
  let msg: unknown
  try {
    msg = dagCbor.decode(body)
  } catch (err) {
    throw new MalformedFrameError(`frame body is not valid dag-cbor: ${(err as Error).message}`)
  }
  const isMap =
    typeof msg === 'object' &&
    msg !== null &&
    !Array.isArray(msg) &&
    !ArrayBuffer.isView(msg) &&
    !CID.asCID(msg)
  if (!isMap) throw new MalformedFrameError('frame body must be a map')
  if (typeof (msg as Frame).t !== 'string') throw new MalformedFrameError('frame.t must be a string')
  return msg as Frame
}

/**
 * Incremental decoder. Pushed chunks are kept by reference until consumed, so don't mutate them.
 * After it throws, the decoder stays failed: abort the stream.
 */
export class FrameDecoder {
  readonly maxFrameBytes: number
  private readonly parse: (body: Uint8Array[]) => Frame
  private readonly budget: ByteBudget | undefined
  private chunks: Uint8Array[] = []
  private buffered = 0
  private bodyLength: number | null = null
  private failed: Error | null = null
  /** Frames decoded but not yet handed out by readFrame. */
  readonly queue: Frame[] = []

  /** `parse` gets the body as views of the pushed chunks, in order (several when it spans chunks). */
  constructor(
    maxFrameBytes: number,
    parse: (body: Uint8Array[]) => Frame = (b) => parseBody(concat(b)),
    budget?: ByteBudget,
  ) {
    this.maxFrameBytes = maxFrameBytes
    this.parse = parse
    this.budget = budget
  }

  /** Gives back what is buffered to the budget; call once the stream is gone. The decoder stays failed. */
  dispose(): void {
    this.fail(new MalformedFrameError('the stream closed'))
  }

  private fail(err: Error): void {
    this.failed ??= err
    this.chunks = []
    this.budget?.give(this.buffered)
    this.buffered = 0
  }

  /** Bytes held that do not yet form a whole frame. */
  get bufferedBytes(): number {
    return this.buffered
  }

  /** True between frames: nothing of a next frame has arrived yet. */
  get idle(): boolean {
    return this.buffered === 0 && this.bodyLength === null
  }

  push(chunk: Chunk): Frame[] {
    if (this.failed) throw this.failed
    const bytes = chunk.subarray()
    const frames: Frame[] = []
    try {
      if (bytes.byteLength > 0) {
        if (this.budget && !this.budget.take(bytes.byteLength)) {
          throw new InboundLimitError(`the peer's partial frames would pass their memory bound`)
        }
        this.chunks.push(bytes)
        this.buffered += bytes.byteLength
      }
      for (;;) {
        if (this.bodyLength === null && !this.readLength()) break
        const len = this.bodyLength!
        if (this.buffered < len) break
        this.bodyLength = null
        const frame = this.parse(this.take(len))
        sizes.set(frame, len)
        frames.push(frame)
      }
    } catch (err) {
      this.fail(err as Error)
      throw err
    }
    return frames
  }

  /** Parses the varint prefix if complete; enforces minimal encoding, non-zero and the size limit. */
  private readLength(): boolean {
    let value = 0
    let i = 0
    for (const chunk of this.chunks) {
      for (const byte of chunk) {
        value += (byte & 0x7f) * 2 ** (7 * i)
        i++
        if (byte < 0x80) {
          if (i > 1 && byte === 0) throw new MalformedFrameError('frame length varint is not minimal')
          if (value === 0) throw new MalformedFrameError('zero-length frame')
          if (value > this.maxFrameBytes) {
            throw new FrameTooLargeError(`frame declares ${value} bytes, limit ${this.maxFrameBytes}`)
          }
          this.take(i)
          this.bodyLength = value
          return true
        }
        if (i >= MAX_VARINT_BYTES)
          throw new MalformedFrameError(`frame length varint exceeds ${MAX_VARINT_BYTES} bytes`)
      }
    }
    return false
  }

  /** Removes and returns the next `n` buffered bytes as views of the pushed chunks. */
  private take(n: number): Uint8Array[] {
    const out: Uint8Array[] = []
    for (let left = n; left > 0; ) {
      const c = this.chunks[0]!
      const k = Math.min(c.byteLength, left)
      out.push(c.subarray(0, k))
      left -= k
      if (k === c.byteLength) this.chunks.shift()
      else this.chunks[0] = c.subarray(k)
    }
    this.buffered -= n
    this.budget?.give(n)
    return out
  }
}

// One iterator per source: libp2p streams start a fresh listener per iterator, so re-iterating loses data.
const iterators = new WeakMap<object, AsyncIterator<Chunk>>()

/**
 * Reads the next frame, or null at a clean end of stream. Frames that arrived in the same chunk
 * stay queued in the decoder for the next call. Throws MalformedFrameError if the stream ends mid-frame.
 */
export async function readFrame(
  source: AsyncIterable<Chunk> | AsyncIterator<Chunk>,
  decoder: FrameDecoder,
): Promise<Frame | null> {
  const queued = decoder.queue.shift()
  if (queued) return queued
  let it = iterators.get(source)
  if (!it) {
    it = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source
    iterators.set(source, it)
  }
  for (;;) {
    const next = await it.next()
    if (next.done) {
      if (!decoder.idle) {
        throw new MalformedFrameError(`stream ended mid-frame (${decoder.bufferedBytes} bytes buffered)`)
      }
      return null
    }
    const frames = decoder.push(next.value)
    if (frames.length > 0) {
      decoder.queue.push(...frames.slice(1))
      return frames[0]!
    }
  }
}
