/**
 * peer-compute in Node (`import … from 'peer-compute/node'`): a peer with a data directory, its
 * onnxruntime-node engine and its file store. Built into dist-node/index.mjs by vite.cli.config.ts.
 *
 * @example
 * ```ts
 * import { createNodePeer } from 'peer-compute/node'
 * const peer = await createNodePeer({ dir: './pc-data', relays: [relayAddr], contribute: true })
 * const r = await peer.submit('mlp-tiny', { x: { dtype: 'float32', dims: [1, 16], data: new Float32Array(16) } })
 * console.log(r.workers, r.outputs.y)
 * await peer.stop()
 * ```
 */
import './polyfills.ts'

// The browser entry's public API, less createPeer (a browser peer): the same types and checks.
export type {
  Capabilities,
  CatalogEntry,
  CompareRule,
  ComputeTabStatus,
  ContributorSettings,
  Controls,
  ControlsEvents,
  ControlsState,
  CreditLogSummary,
  Credits,
  CreditsEvents,
  DType,
  ImportOptions,
  JobDone,
  JobOutcome,
  KnownPeer,
  ModelHub,
  ModelHubEvents,
  ModelInfo,
  ModelProgress,
  NamedTensors,
  Peer,
  PeerEvents,
  PeerFetchOptions,
  PeerOptions,
  PeerStatus,
  QuorumCheck,
  QuorumRecord,
  Receipt,
  ReceiptBody,
  RelayState,
  Reputation,
  RunningJob,
  ServedTotals,
  SubmitOptions,
  Tensor,
  TensorSpec,
  TransferRecord,
  VerificationPolicy,
} from '../src/index.ts'
export {
  decodeReceipt,
  encodeReceipt,
  errors,
  policyFor,
  verifyCreditLog,
  verifyQuorumRecord,
  verifyReceipt,
} from '../src/index.ts'
export { createNodeEngine, type NodeEngine, type NodeEngineEvent, type NodeEngineOptions } from './engine.ts'
export { createNodePeer, type NodePeer, type NodePeerOptions, packagedCatalog } from './peer.ts'
export { createFileStore, type FileStore } from './store/index.ts'
