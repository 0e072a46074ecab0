/**
 * How a requester's job is kept in IndexedDB between steps: receipts as dag-cbor bytes and tensors
 * in their canonical encoding, so a reloaded page can rebuild the exact state.
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { NamedTensors } from '../shared/tensor.ts'
import { decodeTensors, type EncodedTensors, encodeTensors } from '../shared/tensor-codec.ts'
import type { JobRecord } from '../store/schema.ts'
import type { VerificationPolicy } from '../trust/policy.ts'
import type { QuorumRecord } from '../trust/quorum-record.ts'
import { decodeReceipt, encodeReceipt, parseReceipt } from '../trust/receipt.ts'
import type { QuorumState, Replica } from './quorum.ts'
import type { JobOutcome } from './types.ts'

type StoredReplica = Omit<Replica, 'result'> & {
  result?: {
    job: string
    outputs: EncodedTensors
    receipt: Uint8Array
    outputCid: string
    roundTripMs: number
  }
}

export type StoredQuorum = Omit<QuorumState, 'replicas'> & { replicas: StoredReplica[] }

export interface StoredJob {
  v: 1
  model: string
  modelName: string
  policy: VerificationPolicy
  createdAt: number
  quorum: StoredQuorum
  /** Single-target jobs (SubmitOptions.peer). */
  target?: string
  timeoutMs?: number
}

/** Maps each replica's result, keeping everything else: the one place both conversions go through. */
function mapResults<A, B>(
  s: { replicas: (Omit<Replica, 'result'> & { result?: A })[] },
  f: (result: A) => B,
): (Omit<Replica, 'result'> & { result?: B })[] {
  return s.replicas.map(({ result, ...r }) => (result ? { ...r, result: f(result) } : r))
}

export function toStored(s: QuorumState): StoredQuorum {
  return {
    ...s,
    replicas: mapResults(s, (res) => ({
      ...res,
      outputs: encodeTensors(res.outputs),
      receipt: encodeReceipt(res.receipt),
    })),
  }
}

export function fromStored(s: StoredQuorum): QuorumState {
  return {
    ...s,
    replicas: mapResults(s, (res) => ({
      ...res,
      outputs: decodeTensors(res.outputs),
      receipt: decodeReceipt(res.receipt),
    })),
  }
}

/** Rebuilds the outcome of a verified job from its stored quorum record. */
export function outcomeFromRecord(rec: JobRecord): JobOutcome {
  const qr = dagCbor.decode(rec.record!) as QuorumRecord
  const members = qr.members.map((m) => ({
    receipt: parseReceipt(m.receipt),
    outputs: decodeTensors(m.outputs),
  }))
  const first = members[0]!
  const outputs: NamedTensors = first.outputs
  return {
    id: rec.id,
    state: 'verified',
    outputs,
    worker: first.receipt.body.worker,
    workers: members.map((m) => m.receipt.body.worker),
    receipt: first.receipt,
    receipts: members.map((m) => m.receipt),
    job: first.receipt.body.job.toString(),
    ep: first.receipt.body.ep,
    runMs: first.receipt.body.timing.runUs / 1000,
    roundTripMs: rec.roundTripMs ?? 0,
    attempts: rec.replicas?.length ?? members.length,
    risk: rec.risk ?? 1, // records from before risks were kept state none: no claim
    record: rec.record!,
  }
}
