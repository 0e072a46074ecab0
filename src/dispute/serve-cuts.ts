/**
 * The contributor's side of a dispute over cuts (serve.ts's `commit` with `cuts: true`): nothing is
 * hashed or signed at the commit; a CutCommitter over the trace signs each cut asked for, and
 * answers the chunk hashes, chunks and whole tensors of tensors live across a cut.
 */
import type { PrivateKey } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import type { Frame } from '../net/frame.ts'
import { type NamedTensors, tensorsByteLength } from '../shared/tensor.ts'
import { chunkCount } from './chunks.ts'
import { type DisputePlan, disputeRules } from './commit.ts'
import { type CutCommitter, createCutCommitter } from './cut-commit.ts'
import { HASH_BYTES } from './hash.ts'
import { answerFrame, type CutQuestion, type Question, Refusal } from './wire-frames.ts'

/** A cuts-mode commitment held for one requester. */
export interface CutsHeld {
  cuts: CutCommitter
  /** The trace's bytes and, at most, the chunk hashes its tensors can take once hashed. */
  bytes: number
}

/**
 * A committer over `trace` (the job's inputs included: cut -1 is them) for the job `q` names, and the
 * `ready` answer: how many leaves the plan has, nothing signed yet.
 */
export function commitCuts(
  q: Question & { t: 'commit' },
  o: { trace: NamedTensors; plan: DisputePlan; key: PrivateKey; input: CID },
): { held: CutsHeld; answer: Frame } {
  const { trace, plan, key } = o
  const rules = disputeRules(q.compare)
  const cuts = createCutCommitter({ trace, plan, rules, key, job: q.job, model: q.model, input: o.input })
  return { held: { cuts, bytes: heldBytes(trace) }, answer: { t: 'ready', leaves: plan.leaves.length } }
}

/** Every tensor's bytes and its chunk hashes on every grid: what the committer may come to hold. */
function heldBytes(trace: NamedTensors): number {
  let bytes = 0
  for (const t of Object.values(trace)) bytes += t.data.byteLength + chunkCount(t.dims) * 3 * HASH_BYTES
  return bytes
}

/**
 * The `outputs` or `tensor` answer holding `tensors`; too-large, before anything is encoded, where
 * their data alone is over `max` (the frame holds it all and more): else a ~1 KiB question would
 * have us copy a tensor up to the trace cap, only to refuse it once encoded.
 */
export function tensorsAnswer(t: 'outputs' | 'tensor', tensors: NamedTensors, max: number): Frame {
  const bytes = tensorsByteLength(tensors)
  if (bytes > max) throw new Refusal('too-large', `the '${t}' answer holds ${bytes} bytes, over ${max}`)
  return answerFrame(t, tensors)
}

/** The committer's answer to a cut question, within `max` bytes; its InvalidOptionError is the peer's. */
export async function answerCuts(c: CutCommitter, q: CutQuestion, max: number): Promise<Frame> {
  try {
    switch (q.t) {
      case 'cut':
        return answerFrame(q.t, await c.commit(q.p))
      case 'tensorHashes':
        return answerFrame(q.t, await c.chunkHashes(q.name))
      case 'tensorChunks':
        return answerFrame(q.t, await c.chunks(q.name, q.indices))
      case 'tensor':
        return tensorsAnswer(q.t, { [q.name]: await c.tensor(q.name) }, max)
    }
  } catch (err) {
    // A cut tensor the trace lacks (or cannot encode) is this contributor's fault, not the peer's.
    if ((err as Error)?.name !== 'InvalidTensorError') throw err
    throw new Error(`the trace cannot answer '${q.t}': ${(err as Error).message}`)
  }
}
