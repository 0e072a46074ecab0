/**
 * peer-compute: turn a browser tab into a compute peer.
 *
 * @example
 * ```ts
 * import { createPeer } from 'peer-compute'
 * const peer = await createPeer()            // relay from peer-compute.json next to the page
 * await peer.setContributing(true)           // serve jobs for others
 * const r = await peer.submit('mlp-tiny', { x: { dtype: 'float32', dims: [1, 16], data: new Float32Array(16) } })
 * console.log(r.worker, r.outputs.y, r.receipt)   // verified: signature + output CID checked
 * ```
 */

export type {
  ComputeTabStatus,
  ContributorSettings,
  Controls,
  ControlsEvents,
  ControlsState,
  JobDone,
  RunningJob,
  ServedTotals,
} from './compute/controls.ts'
export type { JobOutcome, SubmitOptions } from './jobs/requester.ts'
export type { CatalogEntry, TensorSpec } from './models/catalog.ts'
export type {
  ImportOptions,
  ModelHub,
  ModelHubEvents,
  ModelInfo,
  ModelProgress,
  PeerFetchOptions,
  TransferRecord,
} from './models/hub.ts'
export type { Capabilities } from './net/advert.ts'
export type { KnownPeer } from './net/discovery.ts'
export {
  createPeer,
  type Peer,
  type PeerEvents,
  type PeerOptions,
  type PeerStatus,
  type RelayState,
} from './peer.ts'
export * as errors from './shared/errors.ts'
export type { DType, NamedTensors, Tensor } from './shared/tensor.ts'
export { type CreditLogSummary, verifyCreditLog } from './trust/credit-log.ts'
export type { Credits, CreditsEvents } from './trust/credits.ts'
export { type CompareRule, policyFor, type VerificationPolicy } from './trust/policy.ts'
export { type QuorumCheck, type QuorumRecord, verifyQuorumRecord } from './trust/quorum-record.ts'
export type { Receipt, ReceiptBody } from './trust/receipt.ts'
export { decodeReceipt, encodeReceipt, verifyReceipt } from './trust/receipt.ts'
export type { Reputation } from './trust/reputation.ts'
