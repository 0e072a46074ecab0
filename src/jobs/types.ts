/** The public shapes of a requester's job: what `submit` takes and what it resolves with. */
import type { NamedTensors } from '../shared/tensor.ts'
import type { VerificationPolicy } from '../trust/policy.ts'
import type { Receipt } from '../trust/receipt.ts'

export interface SubmitOptions {
  /** Run on this PeerId only: one replica, no reissue. */
  peer?: string
  /**
   * Idempotency key: a job id runs at most once; submitting it again returns the same outcome
   * (with `persist: false`, only while the first submit runs: nothing is kept after it).
   */
  id?: string
  policy?: Partial<VerificationPolicy>
  /** Per-replica timeout (default: the policy's). */
  timeoutMs?: number
  signal?: AbortSignal
  /**
   * false: no record, state or inputs of the job are written to IndexedDB (the peers' reputation
   * still is). It gets no history entry and does not resume after a reload, and its `id` is known
   * only while it runs (an `id` already on record resumes or returns that job as stored). In return
   * the browser is spared the writes, the largest per-job cost outside the compute (bench/README.md).
   */
  persist?: boolean
}

export interface JobOutcome {
  id: string
  state: 'verified'
  outputs: NamedTensors
  /** The first agreeing worker, and all of them. */
  worker: string
  workers: string[]
  receipt: Receipt
  receipts: Receipt[]
  /** CID of the first agreeing replica's signed job. */
  job: string
  ep: string
  runMs: number
  roundTripMs: number
  /** Replicas dispatched, counting reissues. */
  attempts: number
  /**
   * The probability that this verified result is wrong, under the policy used and the workers'
   * reputation when it was accepted (worst case over liar strategies; DESIGN.md "Stated risk").
   * 1 (no claim) for a job verified before risks were kept.
   */
  risk: number
  /** dag-cbor quorum record, checkable offline (`npm run verify`). */
  record: Uint8Array
}
