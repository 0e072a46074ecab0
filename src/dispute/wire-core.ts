/**
 * The requester's end of one dispute stream, shared by remoteParty (wire.ts, a tree over leaves) and
 * remoteCutParty (wire-cuts.ts, cuts): questions go out in order, each answer settles the oldest,
 * and the first failure (a malformed, refused, late or missing answer, or the stream's end) fails
 * every question after it. None of these errors is named `Dispute*`: bisect blames them as transport.
 */
import type { Stream } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { encodeFrame, type Frame, FrameDecoder, frameBytes, readFrame, sendEncoded } from '../net/frame.ts'
import { AbortError, FrameTooLargeError, MalformedFrameError, PartyTimeoutError } from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import type { CompareRule } from '../trust/policy.ts'
import { bytes, DISPUTE_LIMITS, fields, list, malformed, refusal } from './wire-frames.ts'

export interface RemotePartyOptions {
  /** The contributor's peer id (the connection's remote peer): the commitment's signer. */
  worker: string
  job: CID
  model: CID
  /** The job's inputs: the server reruns the trace on them. */
  inputs: NamedTensors
  /** The inputs' CID, where the caller has it (a receipt names it): else it is computed. */
  input?: CID
  /** The job's compare rule: the server commits under disputeRules(compare). */
  compare: CompareRule
  /** Per answer (default 30 s). */
  timeoutMs?: number
  /** For the commitment, which runs the whole trace (default 120 s). */
  commitTimeoutMs?: number
  /** Largest `outputs` (or `tensor`) answer (default DISPUTE_LIMITS.outputs). */
  maxOutputBytes?: number
  signal?: AbortSignal
}

/** Frame bytes each way, varint prefixes included. */
export interface WireMeter {
  sent: number
  received: number
  frames: number
  /** Bytes received by answer type. */
  byAnswer: Record<string, number>
}

interface Pending {
  t: string
  limit: number
  parse(f: Frame): unknown
  resolve(v: unknown): void
  reject(err: Error): void
  timer: ReturnType<typeof setTimeout>
}

const varintLength = (n: number) => Math.max(1, Math.ceil(Math.log2(n + 1) / 7))

/** One stream's state: the questions awaiting answers and the first failure. */
export interface WireState {
  stream: Stream
  o: RemotePartyOptions
  timeoutMs: number
  decoder: FrameDecoder
  pending: Pending[]
  wire: WireMeter
  failure: Error | undefined
  reading: boolean
  onAbort: () => void
}

/** The requester's end of `stream`; `o.signal` aborting fails every question. */
export function openWire(stream: Stream, o: RemotePartyOptions): WireState {
  const s: WireState = {
    stream,
    o,
    timeoutMs: o.timeoutMs ?? 30_000,
    decoder: new FrameDecoder(
      Math.max(o.maxOutputBytes ?? DISPUTE_LIMITS.outputs, DISPUTE_LIMITS.chunkHashes),
    ),
    pending: [],
    wire: { sent: 0, received: 0, frames: 0, byAnswer: {} },
    failure: undefined,
    reading: false,
    onAbort: () => fail(s, new AbortError('the dispute was cancelled')),
  }
  o.signal?.addEventListener('abort', s.onAbort, { once: true })
  return s
}

/** Ends our side of the stream; pending questions fail. */
export async function closeWire(s: WireState): Promise<void> {
  if (s.pending.length) return fail(s, new AbortError('the dispute party was closed'))
  s.failure ??= new AbortError('the dispute party was closed')
  s.o.signal?.removeEventListener('abort', s.onAbort)
  await s.stream.close({ signal: AbortSignal.timeout(5000) }).catch((err) => s.stream.abort(err))
}

/** Fails every pending question (and every later one) with the first failure, and aborts the stream. */
function fail(s: WireState, err: Error) {
  s.failure ??= err
  s.o.signal?.removeEventListener('abort', s.onAbort)
  for (const p of s.pending.splice(0)) {
    clearTimeout(p.timer)
    p.reject(err)
  }
  if (s.stream.status === 'open') s.stream.abort(err)
}

/** Reads answers until the stream ends or fails, each one settling the oldest question. */
async function read(s: WireState) {
  s.reading = true
  try {
    for (;;) {
      const f = await readFrame(s.stream, s.decoder)
      if (!f) return fail(s, new MalformedFrameError('the dispute stream ended before every answer'))
      const size = frameBytes(f)
      s.wire.received += size + varintLength(size)
      s.wire.frames++
      s.wire.byAnswer[f.t] = (s.wire.byAnswer[f.t] ?? 0) + size + varintLength(size)
      const p = s.pending.shift()
      if (!p) return fail(s, new MalformedFrameError(`an answer '${f.t.slice(0, 32)}' nobody asked for`))
      clearTimeout(p.timer)
      settle(p, f, size)
    }
  } catch (err) {
    fail(s, err as Error)
  }
}

/** Settles question `p` with answer `f` of `size` bytes: a refusal, a malformed answer or its parse. */
function settle(p: Pending, f: Frame, size: number) {
  try {
    if (f.t === 'error') {
      if (size > DISPUTE_LIMITS.error) malformed(`error frame of ${size} bytes`)
      p.reject(refusal(f))
    } else if (f.t !== p.t) malformed(`'${f.t.slice(0, 32)}' answers '${p.t}'`)
    else if (size > p.limit)
      throw new FrameTooLargeError(`'${p.t}' answer of ${size} bytes, limit ${p.limit}`)
    else p.resolve(p.parse(f))
  } catch (err) {
    p.reject(err as Error)
  }
}

/** Sends question `q` and waits for its answer of type `t`, at most `limit` bytes, read by `parse`. */
export function ask<T>(
  s: WireState,
  q: Frame,
  t: string,
  limit: number,
  parse: (f: Frame) => T,
  ms = s.timeoutMs,
): Promise<T> {
  if (s.failure) return Promise.reject(s.failure)
  let encoded: Uint8Array
  try {
    encoded = encodeFrame(q, q.t === 'commit' ? DISPUTE_LIMITS.commit : DISPUTE_LIMITS.question)
  } catch (err) {
    return Promise.reject(err)
  }
  const answer = new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => fail(s, new PartyTimeoutError(`no '${t}' answer within ${ms} ms`)), ms)
    s.pending.push({ t, limit, parse, resolve: resolve as (v: unknown) => void, reject, timer })
  })
  if (!s.reading) void read(s)
  s.wire.sent += encoded.byteLength
  const closed = (cause?: Error) => cause ?? new MalformedFrameError('the dispute stream closed')
  sendEncoded(s.stream, encoded, s.o.signal ? { signal: s.o.signal, closed } : { closed }).catch((err) =>
    fail(s, err),
  )
  return answer
}

/** The limit of a `chunks` answer holding `n` chunks. */
export const chunksLimit = (n: number) => (n + 1) * (DISPUTE_LIMITS.chunk + 16)

/** The parser of a `chunks` answer to a question for the chunks at `indices`. */
export const parseChunks =
  (indices: number[]) =>
  (f: Frame): Uint8Array[] => {
    const got = list(fields(f, 'chunks', ['t', 'chunks']).chunks, 'chunks', indices.length, (c, w) =>
      bytes(c, w, DISPUTE_LIMITS.chunk),
    )
    return got.length === indices.length ? got : malformed(`${got.length} chunks for ${indices.length}`)
  }
