/** What the requester (src/jobs/requester.ts) is built from, and one job as it drives it. */
import type { Logger } from '@libp2p/interface'
import type { TensorSpec } from '../models/catalog.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import type { Reputation } from '../trust/reputation.ts'
import type { Adaptive } from './adaptive.ts'
import type { Dispatcher } from './dispatch.ts'
import type { Disputer } from './dispute.ts'
import type { JobSpec, Journal } from './journal.ts'
import type { QuorumState } from './quorum.ts'
import type { Scheduler } from './scheduler.ts'

export interface RequesterOptions {
  /** Sends one replica to a contributor or to our own worker (createDispatcher). */
  dispatcher: Dispatcher
  /** Settles 1–1 disagreements by dispute (createDisputer); absent: a third replica, as before. */
  disputer?: Disputer
  selfId: string
  scheduler: Scheduler
  /** Where jobs are kept between steps (createStoreJournal); `persist: false` jobs use none. */
  journal: Journal
  reputation: Reputation
  adaptive: Adaptive
  outputsOf(model: string): TensorSpec[] | undefined
  log: Logger
  capacityChanged(signal: AbortSignal): Promise<void>
  /** Why no contributor can be linked at all (Discovery.noPath), if so. */
  noPath?(): string | undefined
}

/** One job as the requester drives it. */
export interface RequesterRun {
  id: string
  spec: JobSpec
  q: QuorumState
  inputs: NamedTensors
  /** The submit write (record, pending state, inputs): the job ends only after it has landed. */
  durable: Promise<void>
  /** Where its state goes: the store, or nowhere (SubmitOptions.persist false). */
  journal: Journal
  signal?: AbortSignal
}
