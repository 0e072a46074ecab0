/**
 * The dispute protocol's frames (`/peer-compute/dispute/2.0.0`) and the requester's side of it:
 * `remoteParty` is a DisputeParty that asks a contributor over one stream. Frames are the job
 * protocol's (varint length + dag-cbor map with `t`). Answers come back in the order asked (the
 * stream's machinery is wire-core.ts, shared with remoteCutParty in wire-cuts.ts).
 *
 * Every answer is shape-checked here; what it proves is checked by bisect and the referee. A
 * malformed, refused, late or missing answer throws an error whose name is not `Dispute*`, so bisect
 * blames its party for a transport failure, not a lie.
 */
import type { Stream } from '@libp2p/interface'
import type { Frame } from '../net/frame.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { decodeTensors, encodeTensors, tensorsCid } from '../shared/tensor-codec.ts'
import type { Commitment } from './commit.ts'
import type { DisputeParty } from './party.ts'
import {
  ask,
  chunksLimit,
  closeWire,
  openWire,
  parseChunks,
  type RemotePartyOptions,
  type WireMeter,
  type WireState,
} from './wire-core.ts'
import {
  DISPUTE_LIMITS,
  fields,
  hash,
  list,
  malformed,
  parseChunkHashes,
  parseLeaf,
  type SignedCommitment,
  verifyCommitment,
} from './wire-frames.ts'

export type { RemotePartyOptions, WireMeter } from './wire-core.ts'

export interface RemoteParty extends DisputeParty {
  /** The signed commitment (verified), once commitment() resolved. */
  signed(): Promise<SignedCommitment>
  readonly wire: WireMeter
  /** Ends our side of the stream; pending questions fail. */
  close(): Promise<void>
}

/** One remote party's stream, and its commitment once asked for. */
interface PartyState extends WireState {
  signed: Promise<{ signed: SignedCommitment; commitment: Commitment }> | undefined
}

/** A DisputeParty that asks the contributor at the other end of `stream` (its commitment first). */
export function remoteParty(stream: Stream, o: RemotePartyOptions): RemoteParty {
  const s: PartyState = Object.assign(openWire(stream, o), { signed: undefined })
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
      question(s, { t: 'chunks', p, name, indices }, chunksLimit(indices.length), parseChunks(indices)),
    close: () => closeWire(s),
  }
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
