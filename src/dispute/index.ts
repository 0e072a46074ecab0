/**
 * Disputes settled by bisection: two contributors whose results disagree are asked about their
 * traces until the first node they part at is found, and a referee recomputes that node alone.
 *
 * @example
 * ```ts
 * const plan = disputePlan(modelBytes)
 * const rules = disputeRules(policy.compare)
 * // each contributor: run withIntermediateOutputs(plan.model), then
 * const committed = await commitTrace(plan, rules, trace) // sign committed.commitment.root
 * const party = localParty(plan, committed, trace)
 * // the requester, over two parties (local or remote):
 * const divergence = await bisect({ plan, rules, a, b, roots: { a: rootA, b: rootB } })
 * const settlement = await referee({ plan, rules, divergence, a, b, jobInputs, run })
 * const record = buildDisputeRecord({ model: cid, plan, rules, divergence, settlement })
 * await verifyDisputeRecord(encodeDisputeRecord(record), { plan, run })
 * ```
 */
export {
  asker,
  type BisectOptions,
  bisect,
  blame,
  CHUNK_BATCH,
  checkAnswer,
  checkCommitment,
  type Divergence,
  isDisputeError,
  key,
  type Pair,
  type PartyError,
  type Settled,
  type Side,
} from './bisect.ts'
export {
  CHUNK,
  type ChunkHashes,
  checkChunk,
  checkChunkHashes,
  chunkDiff,
  chunkHashes,
  chunksAgree,
  coarseDigest,
  differingChunks,
  exactDigest,
  quantise,
  type TensorHashes,
  type Tolerance,
} from './chunks.ts'
export {
  type Commitment,
  type Committed,
  checkLeaf,
  coarseEqual,
  coarseHash,
  coarseLeafHash,
  coarseOf,
  commitmentRoot,
  commitTrace,
  DEFAULT_NODE_TOLERANCE,
  type DisputePlan,
  type DisputeRules,
  disputePlan,
  disputeRules,
  exactEqual,
  exactHash,
  exactLeafHash,
  gridsAgree,
  type Leaf,
  type LeafAnswer,
  leafFor,
  leafNode,
  leafOutputs,
  MIN_NODE_ATOL,
  MIN_NODE_RTOL,
  type NodeRule,
  type OutputCommitment,
  producers,
  REFEREE_MIN_ATOL,
  REFEREE_MIN_RTOL,
  refereeRule,
  ruleAt,
  type TensorRule,
  tensorCommitment,
  tensorRule,
  tensorsAgree,
  toleranceOf,
} from './commit.ts'
export { type MerkleTree, merkleTree, rootFromProof, sameBytes, verifyProof } from './merkle.ts'
export {
  createTraceCache,
  type GraphNode,
  graphNodes,
  type InputSource,
  type NodeInput,
  type OnnxModel,
  parseModel,
  singleNodeModel,
  type TensorSpec,
  type TraceCache,
  type TraceModel,
  traceOutputs,
  withIntermediateOutputs,
} from './onnx-graph.ts'
export { type DisputeParty, localParty, type Meter, metered } from './party.ts'
export {
  buildDisputeRecord,
  type DisputeRecord,
  encodeDisputeRecord,
  type RecordCheck,
  type RecordSide,
  verifyDisputeRecord,
} from './record.ts'
export {
  type Judgement,
  type RefereeOptions,
  type RunNode,
  referee,
  type Settlement,
  type SideSettlement,
  type Verdict,
  verdictOf,
} from './referee.ts'
export { type CommitRequest, type DisputeServer, type DisputeServerOptions, serveDispute } from './serve.ts'
export { type RemoteParty, type RemotePartyOptions, remoteParty, type WireMeter } from './wire.ts'
export {
  type CommitmentBody,
  DISPUTE_LIMITS,
  type DisputeErrorCode,
  type SignedCommitment,
  signCommitment,
  verifyCommitment,
} from './wire-frames.ts'
