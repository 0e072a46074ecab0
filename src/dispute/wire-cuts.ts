/**
 * The requester's side of a dispute over cuts: `remoteCutParty` is a CutParty that asks a contributor
 * over one `/peer-compute/dispute/2.0.0` stream, after a `commit` with `cuts: true` (serve-cuts.ts).
 * Answers are shape-checked here (a signed cut is opened by bisectCuts, a tensor checked against its
 * cut by the referee); a malformed, refused, late or missing one throws an error not named
 * `Dispute*`, blamed on its party as transport, as remoteParty's.
 *
 *   const party = remoteCutParty(stream, { worker, job, model, inputs, compare })
 *   await bisectCuts({ plan, rules, a: party, b: other, workers, job, inputs })
 */
import type { Stream } from '@libp2p/interface'
import type { Frame } from '../net/frame.ts'
import type { Tensor } from '../shared/tensor.ts'
import { decodeTensors, encodeTensors } from '../shared/tensor-codec.ts'
import type { CutParty } from './bisect-cuts.ts'
import { MAX_CUT_BYTES } from './cut-commit.ts'
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
import { bytes, DISPUTE_LIMITS, fields, malformed, parseChunkHashes, uint } from './wire-frames.ts'

export interface RemoteCutParty extends CutParty {
  /** Leaves in the contributor's plan, once its trace is ready (asked once; the first question waits on it). */
  ready(): Promise<number>
  readonly wire: WireMeter
  /** Ends our side of the stream; pending questions fail. */
  close(): Promise<void>
}

/** A `cut` answer's frame around the signed bytes: its type, key and byte-string headers. */
const CUT_FRAME = 32

interface CutPartyState extends WireState {
  ready: Promise<number> | undefined
}

/** A CutParty that asks the contributor at the other end of `stream` (its cuts-mode commit first). */
export function remoteCutParty(stream: Stream, o: RemotePartyOptions): RemoteCutParty {
  const s: CutPartyState = Object.assign(openWire(stream, o), { ready: undefined })
  const maxOutput = o.maxOutputBytes ?? DISPUTE_LIMITS.outputs
  return {
    wire: s.wire,
    ready: () => ready(s),
    cut: (p) => question(s, { t: 'cut', p }, MAX_CUT_BYTES + CUT_FRAME, parseCut),
    chunkHashes: (name) =>
      question(s, { t: 'tensorHashes', name }, DISPUTE_LIMITS.chunkHashes, parseChunkHashes),
    chunks: (name, indices) =>
      question(s, { t: 'tensorChunks', name, indices }, chunksLimit(indices.length), parseChunks(indices)),
    tensor: (name) => question(s, { t: 'tensor', name }, maxOutput, parseTensor(name)),
    close: () => closeWire(s),
  }
}

/** The cuts-mode commit, asked once: the contributor's leaf count once its trace is held. */
function ready(s: CutPartyState): Promise<number> {
  s.ready ??= (async () => {
    const o = s.o
    const q = { t: 'commit', job: o.job, model: o.model, inputs: encodeTensors(o.inputs), compare: o.compare }
    const leaves = (f: Frame) => uint(fields(f, 'ready', ['t', 'leaves']).leaves, 'ready.leaves')
    return ask(
      s,
      { ...q, cuts: true },
      'ready',
      DISPUTE_LIMITS.commitment,
      leaves,
      o.commitTimeoutMs ?? 120_000,
    )
  })()
  return s.ready
}

/** Questions go out once the commit is answered: the server reads them under a smaller limit. */
async function question<T>(s: CutPartyState, q: Frame, limit: number, parse: (f: Frame) => T): Promise<T> {
  await ready(s)
  return ask(s, q, q.t, limit, parse)
}

const parseCut = (f: Frame): Uint8Array =>
  bytes(fields(f, 'cut', ['t', 'signed']).signed, 'cut.signed', MAX_CUT_BYTES)

/** The parser of a `tensor` answer, which must hold tensor `name` and nothing else. */
const parseTensor =
  (name: string) =>
  (f: Frame): Tensor => {
    let t: Tensor | undefined
    try {
      // One tensor at most: a second would be decoded for nothing.
      const named = decodeTensors(fields(f, 'tensor', ['t', 'tensors']).tensors, { maxTensors: 1 })
      t = Object.hasOwn(named, name) ? named[name] : undefined
    } catch (err) {
      return malformed(`tensor: ${(err as Error).message}`)
    }
    return t ?? malformed(`the tensor answer does not hold '${name.slice(0, 32)}'`)
  }
