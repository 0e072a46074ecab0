/**
 * Commitments to a trace: what a contributor signs (one root) so that a dispute can later ask it
 * for any node's outputs and check the answer.
 *
 * Quantisation design. Each tensor gets an exact hash and, under a non-exact rule, grid hashes.
 * - Exact rule: one hash, SHA-256 over dtype, dims and the tensor's chunk hashes (CHUNK values each).
 * - Tolerance rule: the coarse hash is SHA-256 over the values placed on a grid no wider than the
 *   tolerance: below the power of two T where rtol·T ≥ atol, cells are round(x / atol); above it, each
 *   binade [2^e, 2^(e+1)) is cut into cells atol + rtol·2^e wide. Cells come from the float's bits
 *   (integer operations) and one correctly rounded division, so every engine agrees on them.
 *   Equal coarse hashes prove agreement (values in one cell are within atol + rtol·min(|a|, |b|)).
 *   Each cell is hashed as a 2-byte ordinal (cells.ts numbers them in order), or, in a chunk where
 *   some cell has none (NaN, ±Infinity, exact cells, far binades), as 8 bytes: one encoding per chunk.
 *   Unequal ones may be a straddle: two honest values either side of a grid line, with probability
 *   about drift / step per value, and across runtimes nearly every tensor differs in some bit.
 * - So each tensor is also hashed on the same grid shifted by half a cell (`shifted`): two values
 *   closer than half a cell share a cell on one grid or the other, and equal hashes on either grid
 *   prove agreement just as well. Measured on PP-OCR detection, onnxruntime-web vs -node: 184 of 330
 *   tensors and 569 of 6,801 chunks differ on the grid, 138 tensors and 111 chunks on both grids.
 * - What is left is settled by value: tensors are hashed in chunks, and the asker fetches the chunk
 *   hashes, then only the chunks that differ on both grids (CHUNK_BATCH a round, stopping at the
 *   first that disagrees), checks them against their hashes and compares them under the rule. A
 *   straddle costs bytes and rounds, never a false verdict. A coarser grid would let a lie smaller
 *   than its step through, so the step is the tolerance.
 * - Classification rules (argmax, top-k): the coarse hash covers each row's top-k indices, which is
 *   exactly what the rule compares, so there are no grid lines to straddle.
 * - Intermediate tensors are held to at least atol 1e-3, rtol 1e-2 (onnxruntime-web vs -node drift
 *   through PP-OCR detection needs rtol 1.5e-3 at atol 1e-3); the model's outputs to the job's rule.
 *   The referee compares one node recomputed on each side's own inputs (kernel drift measured within
 *   rtol 1e-4 at atol 1e-4) and never uses a rule tighter than that.
 * - What can go wrong: drift beyond the intermediate rule stops the search at an honest node, and a
 *   liar who stays under tolerance at every node can steer the result over many nodes. Both end in
 *   'drift', which punishes nobody: a third replica must decide.
 */
import { DisputeAnswerError, DisputeProofError, InvalidTensorError } from '../shared/errors.ts'
import type { NamedTensors, Tensor } from '../shared/tensor.ts'
import type { CompareRule } from '../trust/policy.ts'
import type { Tolerance } from './cells.ts'
import { type ChunkHashes, chunkHashes, chunksAgree, tensorBytes, tensorHashes } from './chunks.ts'
import { digestOf } from './digests.ts'
import { HASH_BYTES } from './hash.ts'
import { type MerkleTree, merkleTree, rootFromProof, sameBytes } from './merkle.ts'
import { type GraphNode, type OnnxModel, parseModel } from './onnx-graph.ts'

/** How a node's intermediate outputs are compared. */
export type NodeRule = { kind: 'exact' } | ({ kind: 'tolerance' } & Tolerance)
/** How one tensor is compared: a node rule, or top-k indices per row for classification outputs. */
export type TensorRule = NodeRule | { kind: 'topk'; k: number }

export interface DisputeRules {
  /** The job's rule, for the model's outputs. */
  job: CompareRule
  /** The rule for every other node output. */
  node: NodeRule
}

export const MIN_NODE_ATOL = 1e-3
export const MIN_NODE_RTOL = 1e-2
export const DEFAULT_NODE_TOLERANCE: NodeRule = {
  kind: 'tolerance',
  atol: MIN_NODE_ATOL,
  rtol: MIN_NODE_RTOL,
}
/** The referee never compares a recomputed node tighter than this (measured kernel drift). */
export const REFEREE_MIN_ATOL = 1e-4
export const REFEREE_MIN_RTOL = 1e-4

/** Dispute rules for a job: exact stays exact; anything else holds intermediates to at least the minimum. */
export function disputeRules(job: CompareRule, node?: NodeRule): DisputeRules {
  if (job.kind === 'exact') return { job, node: node ?? { kind: 'exact' } }
  const base = node ?? (job.kind === 'tolerance' ? job : DEFAULT_NODE_TOLERANCE)
  if (base.kind === 'exact') return { job, node: base }
  const atol = Math.max(base.atol, MIN_NODE_ATOL)
  return { job, node: { kind: 'tolerance', atol, rtol: Math.max(base.rtol, MIN_NODE_RTOL) } }
}

/** The disputed part of a model: its computing nodes (leaves), in graph order. */
export interface DisputePlan {
  model: OnnxModel
  /** Node index of each leaf. */
  leaves: number[]
  /** The leaf that outputs each tensor name. */
  producer: Record<string, number>
}

export function disputePlan(model: OnnxModel | Uint8Array): DisputePlan {
  const m = model instanceof Uint8Array ? parseModel(model) : model
  const leaves = m.nodes.filter((n) => !n.constant).map((n) => n.index)
  const producer: Record<string, number> = {}
  leaves.forEach((index, position) => {
    for (const o of m.nodes[index]!.outputs) if (o) producer[o] = position
  })
  return { model: m, leaves, producer }
}

export const leafNode = (plan: DisputePlan, position: number): GraphNode =>
  plan.model.nodes[plan.leaves[position]!]!
export const leafOutputs = (node: GraphNode): string[] => node.outputs.filter(Boolean)

/** Leaves whose outputs leaf `position` reads, ascending. */
export function producers(plan: DisputePlan, position: number): number[] {
  const from = leafNode(plan, position).inputs.filter((i) => i.source.kind === 'node')
  return [...new Set(from.map((i) => plan.producer[i.name]!))].sort((x, y) => x - y)
}

/** The rule for tensor `name`: the job's for the model's outputs, the node rule otherwise. */
export function tensorRule(plan: DisputePlan, rules: DisputeRules, name: string): TensorRule {
  const job = rules.job
  if (!plan.model.outputs.includes(name)) return rules.node
  if (job.kind === 'exact') return job
  if (job.kind === 'tolerance') return { kind: 'tolerance', ...(job.perOutput?.[name] ?? job) }
  if (job.outputs && !job.outputs.includes(name)) return rules.node
  return { kind: 'topk', k: job.kind === 'argmax' ? 1 : job.k }
}

/** Rules of leaf `position`'s outputs, in order. */
export const ruleAt = (plan: DisputePlan, rules: DisputeRules, position: number): TensorRule[] =>
  leafOutputs(leafNode(plan, position)).map((name) => tensorRule(plan, rules, name))

/** What the referee compares a recomputed tensor under: `rule`, loosened to the measured kernel drift. */
export function refereeRule(rule: TensorRule): TensorRule {
  if (rule.kind !== 'tolerance') return rule
  return {
    kind: 'tolerance',
    atol: Math.max(rule.atol, REFEREE_MIN_ATOL),
    rtol: Math.max(rule.rtol, REFEREE_MIN_RTOL),
  }
}

export const toleranceOf = (rule: TensorRule): Tolerance | undefined =>
  rule.kind === 'tolerance' ? { atol: rule.atol, rtol: rule.rtol } : undefined

/** Indices of each row's k largest values (last axis), ascending per row; NaN ranks lowest. */
function topkRows(t: Tensor, k: number): Int32Array {
  const width = Math.max(1, t.dims.at(-1) ?? t.data.length)
  const kk = Math.min(k, width)
  const rows = Math.floor(t.data.length / width)
  const out = new Int32Array(rows * kk)
  for (let r = 0; r < rows; r++) {
    const row = Array.from(t.data.subarray(r * width, (r + 1) * width) as ArrayLike<number | bigint>, Number)
    const key = (i: number) => (Number.isNaN(row[i]) ? Number.NEGATIVE_INFINITY : row[i]!)
    const idx = row.map((_, i) => i).sort((i, j) => key(j) - key(i) || i - j)
    out.set(
      idx.slice(0, kk).sort((i, j) => i - j),
      r * kk,
    )
  }
  return out
}

/** The exact hash of a tensor: dtype, dims and its chunk hashes. */
export async function exactHash(t: Tensor): Promise<Uint8Array> {
  return (await tensorCommitment('', t, { kind: 'exact' })).output.exact
}

/** The coarse hash of a tensor under `rule`; undefined under an exact rule. */
export async function coarseHash(t: Tensor, rule: TensorRule): Promise<Uint8Array | undefined> {
  if (rule.kind === 'exact') return undefined
  if (rule.kind === 'topk') {
    const rows = topkRows(t, rule.k)
    return digestOf('pc-dispute/tensor-topk', [rule.k, t.dims.length, ...t.dims, new Uint8Array(rows.buffer)])
  }
  return (await tensorHashes(await chunkHashes(t, rule), rule)).coarse
}

/** What a trace commits to about one tensor. */
export interface OutputCommitment {
  name: string
  exact: Uint8Array
  /** Under a tolerance or top-k rule. */
  coarse?: Uint8Array
  /** Under a tolerance rule: the coarse hash on the grid shifted by half a cell. */
  shifted?: Uint8Array
}

/** One tensor's commitment and its chunk hashes. */
export async function tensorCommitment(
  name: string,
  t: Tensor,
  rule: TensorRule,
): Promise<{ output: OutputCommitment; chunks: ChunkHashes }> {
  const tol = toleranceOf(rule)
  const chunks = await chunkHashes(t, tol)
  const hashes = await tensorHashes(chunks, tol)
  if (rule.kind === 'topk') hashes.coarse = await coarseHash(t, rule)
  return { output: { name, ...hashes }, chunks }
}

const sameShape = (a: Tensor, b: Tensor) => a.dtype === b.dtype && a.dims.join() === b.dims.join()

/** Whether two tensors agree under `rule` (tolerance: symmetric allclose, NaN equal to NaN). */
export function tensorsAgree(_name: string, a: Tensor, b: Tensor, rule: TensorRule): boolean {
  if (!sameShape(a, b)) return false
  if (rule.kind === 'exact') return sameBytes(tensorBytes(a), tensorBytes(b))
  if (rule.kind === 'tolerance') return chunksAgree(a.data, b.data, rule)
  return topkRows(a, rule.k).join() === topkRows(b, rule.k).join()
}

/** A leaf: one node's output commitments. */
export interface Leaf {
  node: number
  outputs: OutputCommitment[]
}

/** What the coarse tree holds for an output: its coarse hash, or its exact one under an exact rule. */
export const coarseOf = (o: OutputCommitment): Uint8Array => o.coarse ?? o.exact

const none = new Uint8Array(0)

/** The exact tree's leaf hash binds every hash of every output. */
export const exactLeafHash = (leaf: Leaf): Promise<Uint8Array> =>
  digestOf('pc-dispute/leaf-exact', [
    leaf.node,
    leaf.outputs.length,
    ...leaf.outputs.flatMap((o) => [o.name, o.exact, o.coarse ?? none, o.shifted ?? none]),
  ])

export const coarseLeafHash = (leaf: Leaf): Promise<Uint8Array> =>
  digestOf('pc-dispute/leaf-coarse', [
    leaf.node,
    leaf.outputs.length,
    ...leaf.outputs.flatMap((o) => [o.name, coarseOf(o)]),
  ])

/** Whether two leaves agree by their coarse (rule) hashes, output by output. */
export const coarseEqual = (a: Leaf, b: Leaf): boolean =>
  a.outputs.length === b.outputs.length &&
  a.outputs.every((o, i) => sameBytes(coarseOf(o), coarseOf(b.outputs[i]!)))
/** Whether two outputs agree by their grid hashes: equal cells on either grid. */
export const gridsAgree = (a: OutputCommitment, b: OutputCommitment): boolean =>
  sameBytes(coarseOf(a), coarseOf(b)) || (!!a.shifted && sameBytes(a.shifted, b.shifted))
export const exactEqual = (a: Leaf, b: Leaf): boolean =>
  a.outputs.length === b.outputs.length && a.outputs.every((o, i) => sameBytes(o.exact, b.outputs[i]!.exact))

/** A trace's commitment: `root` (what a receipt signs) binds the two trees' roots and their size. */
export interface Commitment {
  root: Uint8Array
  /** Root of the tree of coarse leaf hashes: the one bisection walks. */
  coarse: Uint8Array
  /** Root of the tree of exact leaf hashes: it proves the bytes of any tensor sent. */
  exact: Uint8Array
  leaves: number
}

export const commitmentRoot = (coarse: Uint8Array, exact: Uint8Array, leaves: number): Promise<Uint8Array> =>
  digestOf('pc-dispute/commitment', [coarse, exact, leaves])

/** A leaf with its proofs in both trees. */
export interface LeafAnswer {
  leaf: Leaf
  coarsePath: Uint8Array[]
  exactPath: Uint8Array[]
}

/** Everything a contributor keeps to answer a dispute about its trace. */
export interface Committed {
  commitment: Commitment
  leaves: Leaf[]
  coarseTree: MerkleTree
  exactTree: MerkleTree
  /** Chunk hashes by tensor name. */
  chunks: Record<string, ChunkHashes>
}

export const leafFor = (c: Committed, position: number): LeafAnswer => ({
  leaf: c.leaves[position]!,
  coarsePath: c.coarseTree.proof(position),
  exactPath: c.exactTree.proof(position),
})

/** Commits to a trace (every leaf's outputs, by name) under `rules`. */
export async function commitTrace(
  plan: DisputePlan,
  rules: DisputeRules,
  trace: NamedTensors,
): Promise<Committed> {
  const chunks: Record<string, ChunkHashes> = {}
  const leaves: Leaf[] = []
  // One tensor at a time: each holds a batch of cells and, through WebCrypto, of digests in flight.
  for (let position = 0; position < plan.leaves.length; position++) {
    const node = leafNode(plan, position)
    const outputs: OutputCommitment[] = []
    for (const name of leafOutputs(node)) {
      const t = trace[name]
      if (!t) throw new InvalidTensorError(`the trace lacks '${name}', an output of node ${node.index}`)
      const c = await tensorCommitment(name, t, tensorRule(plan, rules, name))
      chunks[name] = c.chunks
      outputs.push(c.output)
    }
    leaves.push({ node: node.index, outputs })
  }
  const coarseTree = await merkleTree(await Promise.all(leaves.map(coarseLeafHash)))
  const exactTree = await merkleTree(await Promise.all(leaves.map(exactLeafHash)))
  const root = await commitmentRoot(coarseTree.root, exactTree.root, leaves.length)
  const commitment = { root, coarse: coarseTree.root, exact: exactTree.root, leaves: leaves.length }
  return { commitment, leaves, coarseTree, exactTree, chunks }
}

const isHash = (h: unknown): h is Uint8Array => h instanceof Uint8Array && h.byteLength === HASH_BYTES
const isPath = (p: unknown): p is Uint8Array[] => Array.isArray(p) && p.every(isHash)
/** Whether an output carries exactly the hashes its rule calls for. */
const hashesFit = (o: OutputCommitment, rule: TensorRule): boolean =>
  rule.kind === 'exact'
    ? o.coarse === undefined && o.shifted === undefined
    : isHash(o.coarse) && (rule.kind === 'topk' ? o.shifted === undefined : isHash(o.shifted))

/** Throws DisputeAnswerError for a malformed leaf answer, DisputeProofError if it is not in `commitment`. */
export async function checkLeaf(
  plan: DisputePlan,
  rules: DisputeRules,
  commitment: Commitment,
  position: number,
  answer: LeafAnswer,
): Promise<void> {
  const node = leafNode(plan, position)
  const names = leafOutputs(node)
  const leaf = answer?.leaf
  const shaped =
    leaf?.node === node.index &&
    Array.isArray(leaf.outputs) &&
    leaf.outputs.length === names.length &&
    leaf.outputs.every(
      (o, i) => o?.name === names[i] && isHash(o.exact) && hashesFit(o, tensorRule(plan, rules, o.name)),
    ) &&
    isPath(answer.coarsePath) &&
    isPath(answer.exactPath)
  if (!shaped) throw new DisputeAnswerError(`malformed answer for leaf ${position} (node ${node.index})`)
  const n = commitment.leaves
  const coarse = await rootFromProof(n, position, await coarseLeafHash(leaf), answer.coarsePath)
  const exact = await rootFromProof(n, position, await exactLeafHash(leaf), answer.exactPath)
  if (!sameBytes(coarse ?? undefined, commitment.coarse) || !sameBytes(exact ?? undefined, commitment.exact))
    throw new DisputeProofError(`leaf ${position} (node ${node.index}) is not in the commitment`)
}
