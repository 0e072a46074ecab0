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

/** A DisputeParty that asks the contributor at the other end of `stream` (its commitment first). */
export function remoteParty(stream: Stream, o: RemotePartyOptions): RemoteParty {
  const timeoutMs = o.timeoutMs ?? 30_000
  const decoder = new FrameDecoder(
    Math.max(o.maxOutputBytes ?? DISPUTE_LIMITS.outputs, DISPUTE_LIMITS.chunkHashes),
  )
  const pending: Pending[] = []
  const wire: WireMeter = { sent: 0, received: 0, frames: 0, byAnswer: {} }
  let failure: Error | undefined
  let reading = false

  const onAbort = () => fail(new AbortError('the dispute was cancelled'))
  const fail = (err: Error) => {
    failure ??= err
    o.signal?.removeEventListener('abort', onAbort)
    for (const p of pending.splice(0)) {
      clearTimeout(p.timer)
      p.reject(err)
    }
    if (stream.status === 'open') stream.abort(err)
  }
  o.signal?.addEventListener('abort', onAbort, { once: true })

  const read = async () => {
    reading = true
    try {
      for (;;) {
        const f = await readFrame(stream, decoder)
        if (!f) return fail(new MalformedFrameError('the dispute stream ended before every answer'))
        const size = frameBytes(f)
        wire.received += size + varintLength(size)
        wire.frames++
        wire.byAnswer[f.t] = (wire.byAnswer[f.t] ?? 0) + size + varintLength(size)
        const p = pending.shift()
        if (!p) return fail(new MalformedFrameError(`an answer '${f.t.slice(0, 32)}' nobody asked for`))
        clearTimeout(p.timer)
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
    } catch (err) {
      fail(err as Error)
    }
  }

  const ask = <T>(q: Frame, t: string, limit: number, parse: (f: Frame) => T, ms = timeoutMs): Promise<T> => {
    if (failure) return Promise.reject(failure)
    let encoded: Uint8Array
    try {
      encoded = encodeFrame(q, q.t === 'commit' ? DISPUTE_LIMITS.commit : DISPUTE_LIMITS.question)
    } catch (err) {
      return Promise.reject(err)
    }
    const answer = new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => fail(new PartyTimeoutError(`no '${t}' answer within ${ms} ms`)), ms)
      pending.push({ t, limit, parse, resolve: resolve as (v: unknown) => void, reject, timer })
    })
    if (!reading) void read()
    wire.sent += encoded.byteLength
    const closed = (cause?: Error) => cause ?? new MalformedFrameError('the dispute stream closed')
    sendEncoded(stream, encoded, o.signal ? { signal: o.signal, closed } : { closed }).catch((err) =>
      fail(err),
    )
    return answer
  }

  let signed: Promise<{ signed: SignedCommitment; commitment: Commitment }> | undefined
  const commit = () => {
    signed ??= (async () => {
      const q = {
        t: 'commit',
        job: o.job,
        model: o.model,
        inputs: encodeTensors(o.inputs),
        compare: o.compare,
      }
      const [f, input] = await Promise.all([
        ask(q, 'commitment', DISPUTE_LIMITS.commitment, (f) => f, o.commitTimeoutMs ?? 120_000),
        tensorsCid(o.inputs),
      ])
      const m = fields(f, 'commitment', ['t', 'signed', 'coarse', 'exact'])
      const s = await verifyCommitment(m.signed, { worker: o.worker, job: o.job, model: o.model, input })
      const commitment: Commitment = {
        root: s.body.root,
        coarse: hash(m.coarse, 'commitment.coarse'),
        exact: hash(m.exact, 'commitment.exact'),
        leaves: s.body.leaves,
      }
      return { signed: s, commitment }
    })()
    return signed
  }
  /** Questions go out once the commitment is in: the server reads them under a smaller limit. */
  const question = async <T>(q: Frame, limit: number, parse: (f: Frame) => T): Promise<T> => {
    await commit()
    return ask(q, q.t, limit, parse)
  }

  return {
    wire,
    signed: async () => (await commit()).signed,
    commitment: async () => (await commit()).commitment,
    children: (from, to) =>
      question({ t: 'children', from, to }, DISPUTE_LIMITS.children, (f) => {
        const h = list(fields(f, 'children', ['t', 'hashes']).hashes, 'children.hashes', 2, hash)
        return h.length === 2 ? (h as [Uint8Array, Uint8Array]) : malformed('children.hashes must be two')
      }),
    leaf: (p) => question({ t: 'leaf', p }, DISPUTE_LIMITS.leaf, parseLeaf),
    outputs: (p) =>
      question({ t: 'outputs', p }, o.maxOutputBytes ?? DISPUTE_LIMITS.outputs, (f) => {
        try {
          return decodeTensors(fields(f, 'outputs', ['t', 'tensors']).tensors)
        } catch (err) {
          return malformed(`outputs: ${(err as Error).message}`)
        }
      }),
    chunkHashes: (p, name) =>
      question({ t: 'chunkHashes', p, name }, DISPUTE_LIMITS.chunkHashes, parseChunkHashes),
    chunks: (p, name, indices) =>
      question({ t: 'chunks', p, name, indices }, (indices.length + 1) * (DISPUTE_LIMITS.chunk + 16), (f) => {
        const got = list(fields(f, 'chunks', ['t', 'chunks']).chunks, 'chunks', indices.length, (c, w) =>
          bytes(c, w, DISPUTE_LIMITS.chunk),
        )
        return got.length === indices.length ? got : malformed(`${got.length} chunks for ${indices.length}`)
      }),
    close: async () => {
      if (pending.length) return fail(new AbortError('the dispute party was closed'))
      failure ??= new AbortError('the dispute party was closed')
      o.signal?.removeEventListener('abort', onAbort)
      await stream.close({ signal: AbortSignal.timeout(5000) }).catch((err) => stream.abort(err))
    },
  }
}
