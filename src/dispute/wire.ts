/**
 * The dispute protocol's frames (`/peer-compute/dispute/1.0.0`) and the requester's side of it:
 * `remoteParty` is a DisputeParty that asks a contributor over one stream. Frames are the job
 * protocol's (varint length + dag-cbor map with `t`). Answers come back in the order asked.
 *
 * Every answer is shape-checked here; what it proves is checked by bisect and the referee. A
 * malformed, refused, late or missing answer throws an error whose name is not `Dispute*`, so bisect
 * blames its party for a transport failure, not a lie.
 */
import type { Stream } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { encodeFrame, type Frame, FrameDecoder, frameBytes, readFrame, sendEncoded } from '../net/frame.ts'
import { AbortError, FrameTooLargeError, MalformedFrameError, PartyTimeoutError } from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { decodeTensors, encodeTensors, tensorsCid } from '../shared/tensor-codec.ts'
import type { CompareRule } from '../trust/policy.ts'
import type { Commitment } from './commit.ts'
import type { DisputeParty } from './party.ts'

import {
  bytes,
  DISPUTE_LIMITS,
  fields,
  hash,
  list,
  malformed,
  parseChunkHashes,
  parseLeaf,
  refusal,
  type SignedCommitment,
  verifyCommitment,
} from './wire-frames.ts'

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
  /** Largest `outputs` answer (default DISPUTE_LIMITS.outputs). */
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

export interface RemoteParty extends DisputeParty {
  /** The signed commitment (verified), once commitment() resolved. */
  signed(): Promise<SignedCommitment>
  readonly wire: WireMeter
  /** Ends our side of the stream; pending questions fail. */
  close(): Promise<void>
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

/** One remote party's state: its stream, the questions awaiting answers and the first failure. */
interface PartyState {
  stream: Stream
  o: RemotePartyOptions
  timeoutMs: number
  decoder: FrameDecoder
  pending: Pending[]
  wire: WireMeter
  failure: Error | undefined
  reading: boolean
  onAbort: () => void
  signed: Promise<{ signed: SignedCommitment; commitment: Commitment }> | undefined
}

/** A DisputeParty that asks the contributor at the other end of `stream` (its commitment first). */
export function remoteParty(stream: Stream, o: RemotePartyOptions): RemoteParty {
  const s: PartyState = {
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
    signed: undefined,
  }
  o.signal?.addEventListener('abort', s.onAbort, { once: true })

  return {
    wire: s.wire,
    signed: async () => (await commit(s)).signed,
    commitment: async () => (await commit(s)).commitment,
    children: (from, to) => question(s, { t: 'children', from, to }, DISPUTE_LIMITS.children, parseChildren),
    leaf: (p) => question(s, { t: 'leaf', p }, DISPUTE_LIMITS.leaf, parseLeaf),
    outputs: (p) =>
      question(s, { t: 'outputs', p }, o.maxOutputBytes ?? DISPUTE_LIMITS.outputs, parseOutputs),
    chunkHashes: (p, name) =>
      question(s, { t: 'chunkHashes', p, name }, DISPUTE_LIMITS.chunkHashes, parseChunkHashes),
    chunks: (p, name, indices) =>
      question(
        s,
        { t: 'chunks', p, name, indices },
        (indices.length + 1) * (DISPUTE_LIMITS.chunk + 16),
        parseChunks(indices),
      ),
    close: async () => {
      if (s.pending.length) return fail(s, new AbortError('the dispute party was closed'))
      s.failure ??= new AbortError('the dispute party was closed')
      o.signal?.removeEventListener('abort', s.onAbort)
      await stream.close({ signal: AbortSignal.timeout(5000) }).catch((err) => stream.abort(err))
    },
  }
}

/** Fails every pending question (and every later one) with the first failure, and aborts the stream. */
function fail(s: PartyState, err: Error) {
  s.failure ??= err
  s.o.signal?.removeEventListener('abort', s.onAbort)
  for (const p of s.pending.splice(0)) {
    clearTimeout(p.timer)
    p.reject(err)
  }
  if (s.stream.status === 'open') s.stream.abort(err)
}

/** Reads answers until the stream ends or fails, each one settling the oldest question. */
async function read(s: PartyState) {
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

function ask<T>(
  s: PartyState,
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

/** The verified commitment, asked for once. */
function commit(s: PartyState) {
  s.signed ??= (async () => {
    const o = s.o
    const q = {
      t: 'commit',
      job: o.job,
      model: o.model,
      inputs: encodeTensors(o.inputs),
      compare: o.compare,
    }
    const [f, input] = await Promise.all([
      ask(s, q, 'commitment', DISPUTE_LIMITS.commitment, (f) => f, o.commitTimeoutMs ?? 120_000),
      o.input ?? tensorsCid(o.inputs),
    ])
    const m = fields(f, 'commitment', ['t', 'signed', 'coarse', 'exact'])
    const signed = await verifyCommitment(m.signed, { worker: o.worker, job: o.job, model: o.model, input })
    const commitment: Commitment = {
      root: signed.body.root,
      coarse: hash(m.coarse, 'commitment.coarse'),
      exact: hash(m.exact, 'commitment.exact'),
      leaves: signed.body.leaves,
    }
    return { signed, commitment }
  })()
  return s.signed
}

/** Questions go out once the commitment is in: the server reads them under a smaller limit. */
async function question<T>(s: PartyState, q: Frame, limit: number, parse: (f: Frame) => T): Promise<T> {
  await commit(s)
  return ask(s, q, q.t, limit, parse)
}

function parseChildren(f: Frame): [Uint8Array, Uint8Array] {
  const h = list(fields(f, 'children', ['t', 'hashes']).hashes, 'children.hashes', 2, hash)
  return h.length === 2 ? (h as [Uint8Array, Uint8Array]) : malformed('children.hashes must be two')
}

function parseOutputs(f: Frame): NamedTensors {
  try {
    return decodeTensors(fields(f, 'outputs', ['t', 'tensors']).tensors)
  } catch (err) {
    return malformed(`outputs: ${(err as Error).message}`)
  }
}

/** The parser of a `chunks` answer to a question for the chunks at `indices`. */
const parseChunks =
  (indices: number[]) =>
  (f: Frame): Uint8Array[] => {
    const got = list(fields(f, 'chunks', ['t', 'chunks']).chunks, 'chunks', indices.length, (c, w) =>
      bytes(c, w, DISPUTE_LIMITS.chunk),
    )
    return got.length === indices.length ? got : malformed(`${got.length} chunks for ${indices.length}`)
  }
