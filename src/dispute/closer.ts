/**
 * Under drift, which side is closer: the one whose claims are nearer its recomputation. A record
 * shows it by its referee outputs; a verifier that reruns the node must find it too.
 */
import type { NamedTensors, Tensor } from '../shared/tensor.ts'
import type { Side } from './bisect.ts'
import { chunkDiff } from './chunks.ts'
import type { OutputCommitment } from './commit.ts'
import { sameBytes } from './merkle.ts'

/** Largest |claimed - recomputed| of one output; infinite where their shapes differ. */
export const distance = (rec: Tensor, claim: Tensor): number =>
  claim.dims.join() === rec.dims.join() ? chunkDiff(rec.data, claim.data) : Number.POSITIVE_INFINITY

/** The side nearer its recomputation, by each side's largest distance; none where one is unknown or they tie. */
export const closerOf = (a: number | undefined, b: number | undefined): Side | undefined =>
  a === undefined || b === undefined || a === b ? undefined : a < b ? 'a' : 'b'

/** The largest difference between a side's claims and the referee's recomputation, if a record shows it. */
export function distanceOf(e: {
  claimed: OutputCommitment[]
  referee?: Uint8Array[]
  outputs?: NamedTensors
  refereeOutputs?: NamedTensors
}): number | undefined {
  let d = 0
  for (const [i, claimed] of e.claimed.entries()) {
    if (sameBytes(e.referee?.[i], claimed.exact)) continue
    const [claim, rec] = [e.outputs?.[claimed.name], e.refereeOutputs?.[claimed.name]]
    if (!claim || !rec) return undefined
    d = Math.max(d, distance(rec, claim))
  }
  return d
}

/** A verifier's rerun of a side: whether it confirms its judgement (undefined: cannot tell), and its distance. */
export interface Rerun {
  confirms?: boolean
  distance?: number
}

/**
 * Whether both sides' reruns prove a record: each judgement and, under drift, the closer. The
 * record's distances rest on its own referee outputs, which need only hash to its own referee
 * hashes; a closer the rerun does not give leaves the record unproven, not invalid: the verifier's
 * runtime may differ from the referee's by ulps.
 */
export function provenBy(r: { verdict: string; closer?: Side }, reruns: Rerun[]): boolean {
  if (reruns.length !== 2 || !reruns.every((x) => x.confirms === true)) return false
  return r.verdict !== 'drift' || closerOf(reruns[0]!.distance, reruns[1]!.distance) === r.closer
}
