/** The shapes runQuorum (src/jobs/quorum.ts) works on and stores, and the effects it is given. */
import type { NamedTensors } from '../shared/tensor.ts'
import type { Receipt } from '../trust/receipt.ts'
import type { Outcome } from '../trust/reputation.ts'

/**
 * 'lost': in flight when the page went away; 'busy': refused for capacity (the replica is then taken
 * out and counted in `QuorumState.busy`); 'refused': declined by the contributor. None of the three
 * counts as an attempt.
 */
export type ReplicaStatus =
  | 'dispatched'
  | 'ok'
  | 'failed'
  | 'timedOut'
  | 'forged'
  | 'lost'
  | 'busy'
  | 'refused'

export interface Replica {
  peer: string
  status: ReplicaStatus
  startedAt: number
  endedAt?: number
  /** Present when status is 'ok'. */
  result?: { job: string; outputs: NamedTensors; receipt: Receipt; outputCid: string; roundTripMs: number }
  error?: { name: string; message: string; code?: string }
  /** An ok result a dispute proved wrong: out of every agreement group, its worker punished once. */
  convicted?: boolean
}

export type FinalState = 'verified' | 'failed' | 'inconclusive'

export interface QuorumState {
  replicas: Replica[]
  /** Replication chosen for this job: the policy's, or 1 for an adaptive single replica. */
  target: number
  quorum: number
  adaptiveSingle: boolean
  /** Dispatches refused for capacity and retried: counted, not kept as replicas. */
  busy?: number
  /** An adaptive single replica was doubted (forged, suspicious) and the full policy taken up. */
  escalated?: boolean
  state?: FinalState
  reason?: string
  /** Verified: the probability that the agreed result is wrong (src/trust/risk.ts), as judged then. */
  risk?: number
  /** Verified: the workers of the accepted result, in replica order (absent in states stored before it). */
  agreed?: string[]
  /** A 1–1 disagreement settled by dispute: the accepted side and the evidence for the job's record. */
  dispute?: SettledDispute
}

export type DisputeSide = 'a' | 'b'

/** What a dispute between two disagreeing replicas came to (src/jobs/dispute.ts). */
export interface DisputeOutcome {
  /** 'undecided': no divergence found, a party refused or timed out, or the dispute failed. */
  verdict: 'a-invalid' | 'b-invalid' | 'both-invalid' | 'drift' | 'undecided'
  /** Under 'drift': the side whose claim the referee found nearer its recomputation. */
  closer?: DisputeSide
  /** The encoded dispute record (encodeDisputeRecord), when a verdict was reached. */
  record?: Uint8Array
  /** v1 records only: each side's signed commitment (dag-cbor); a v2 record holds each side's signed cuts. */
  signed?: { a: Uint8Array; b: Uint8Array }
  /** Sides that did not answer in time (recorded 'timedOut', as a late replica is). */
  timedOut?: DisputeSide[]
  reason?: string
}

export interface SettledDispute {
  verdict: 'a-invalid' | 'b-invalid' | 'drift'
  /** The side whose result the job accepts. */
  accepted: DisputeSide
  /** The two workers, as sides a and b. */
  peers: [string, string]
  record: Uint8Array
  /**
   * v1 records only (a journal from before disputes over cuts): each side's signed commitment, as
   * bytes, not objects, since the state is stored as it is (IndexedDB keeps no CID class).
   */
  signed?: { a: Uint8Array; b: Uint8Array }
  /**
   * The accepted side stands alone: adaptive replication trusted its worker to run this job alone.
   * Otherwise a verdict only rules a side out, and the job still needs a quorum of whole results.
   */
  alone?: boolean
}

/** The worker whose result a dispute accepted. */
export const disputeWinner = (d: SettledDispute): string => d.peers[d.accepted === 'a' ? 0 : 1]

export interface DispatchResult {
  job: string
  worker: string
  outputs: NamedTensors
  receipt: Receipt
  roundTripMs: number
}

export interface QuorumEffects {
  /** A contributor for the next replica, skipping `exclude`; undefined if none is free now. */
  pick(exclude: ReadonlySet<string>, sameClassAs: string[]): string | undefined
  /** Why no contributor can be reached at all (each one's link failed), or undefined. */
  noPath?(): string | undefined
  /** Contributors that could take this job at all, busy or not, outside `exclude`. */
  eligible(exclude: ReadonlySet<string>): number
  /**
   * Once every eligible contributor has refused, how long to wait for a new one before failing
   * (links to honest peers may still be forming). Default 0.
   */
  refusalGraceMs?: number
  /** Resolves when capacity may have changed (a peer appeared or a slot freed), and at least every second. */
  capacityChanged(signal: AbortSignal): Promise<void>
  dispatch(peer: string, timeoutMs: number, signal: AbortSignal): Promise<DispatchResult>
  /** Adaptive replication: may this job run on this single trusted peer alone? */
  singleReplicaOk(peer: string): boolean
  /** A result that looks wrong without comparing (non-finite, wrong shape, too fast): replicate it. */
  suspicious(result: DispatchResult): boolean
  /** `checked`: a valid result that at least one other peer's agreed with. */
  recordOutcome(peer: string, outcome: Outcome, checked?: boolean): Promise<void>
  /**
   * Whether two peers compute in one homogeneous class (default: yes). Bit-exact agreement is
   * evidence only within a class: under `exact`, a replica of another class that differs is drift,
   * not a lie, and is not punished.
   */
  sameClass?(a: string, b: string): boolean
  /** Persist after every change, so a reload resumes here. */
  save(state: QuorumState): Promise<void>
  /** A replica left running past the verdict has ended and been judged (its status is final). */
  lateEnded?(): void
  /** The stated risk of a result these peers agreed on, from their reputation before this job counts. */
  statedRisk?(peers: string[]): number
  /**
   * Settles a 1–1 disagreement between two ok replicas (a: the earlier) by bisection and a referee;
   * undefined or a throw is 'undecided'. Absent: a disagreement buys more replicas, as always.
   */
  dispute?(a: Replica, b: Replica, signal: AbortSignal): Promise<DisputeOutcome | undefined>
}
