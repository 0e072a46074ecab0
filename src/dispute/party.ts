/**
 * A dispute party: one side of a dispute, answering questions about the trace it committed to.
 * Answers are plain data (Uint8Array, Tensor) so the same interface runs over the network.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { copyOf } from '../shared/bytes.ts'
import { InvalidOptionError } from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { encodeTensors } from '../shared/tensor-codec.ts'
import { type ChunkHashes, chunkCount, chunkOf } from './chunks.ts'
import {
  type Commitment,
  type Committed,
  type DisputePlan,
  type LeafAnswer,
  leafFor,
  leafNode,
  leafOutputs,
} from './commit.ts'
import { split } from './merkle.ts'

export interface DisputeParty {
  /** The commitment whose root the party signed. */
  commitment(): Promise<Commitment>
  /** The two child hashes of the coarse tree's node over leaves [from, to). */
  children(from: number, to: number): Promise<[Uint8Array, Uint8Array]>
  /** Leaf `position` with its proofs in both trees. */
  leaf(position: number): Promise<LeafAnswer>
  /** The tensors leaf `position` output, by name. */
  outputs(position: number): Promise<NamedTensors>
  /** The chunk hashes of output `name` of leaf `position`. */
  chunkHashes(position: number, name: string): Promise<ChunkHashes>
  /** Chunks of that output, as little-endian bytes, in the order asked. */
  chunks(position: number, name: string, indices: number[]): Promise<Uint8Array[]>
}

/**
 * A contributor's side: its committed trace, and the tensors it sends (normally the same trace).
 * A question about no such leaf, node or chunk is refused with InvalidOptionError.
 */
export function localParty(plan: DisputePlan, committed: Committed, trace: NamedTensors): DisputeParty {
  const n = plan.leaves.length
  const checkPosition = (p: number) => {
    if (!Number.isInteger(p) || p < 0 || p >= n) throw new InvalidOptionError(`no leaf ${p} among ${n}`)
  }
  const outputOf = (p: number, name: string) => {
    checkPosition(p)
    if (!leafOutputs(leafNode(plan, p)).includes(name))
      throw new InvalidOptionError(`leaf ${p} has no output '${name}'`)
    return trace[name]!
  }
  return {
    commitment: async () => committed.commitment,
    children: async (from, to) => {
      const mid = from + split(to - from)
      const l = committed.coarseTree.node(from, mid)
      const r = committed.coarseTree.node(mid, to)
      if (to - from < 2 || !committed.coarseTree.node(from, to) || !l || !r)
        throw new InvalidOptionError(`[${from}, ${to}) is not a node of the tree`)
      return [l, r]
    },
    leaf: async (p) => {
      checkPosition(p)
      return leafFor(committed, p)
    },
    outputs: async (p) => {
      checkPosition(p)
      return Object.fromEntries(leafOutputs(leafNode(plan, p)).map((name) => [name, trace[name]!]))
    },
    chunkHashes: async (p, name) => {
      outputOf(p, name)
      return committed.chunks[name]!
    },
    chunks: async (p, name, indices) => {
      const t = outputOf(p, name)
      const count = chunkCount(t.dims)
      if (!indices.every((i) => Number.isInteger(i) && i >= 0 && i < count))
        throw new InvalidOptionError(`'${name}' has ${count} chunks`)
      return indices.map((i) => copyOf(chunkOf(t, i))) // each in its own buffer: cheap to send or post
    },
  }
}

/** Counts what a party sends: answers, their dag-cbor size, and how much of it is tensor data. */
export interface Meter {
  answers: number
  bytes: number
  tensorBytes: number
  /** Bytes by question. */
  byQuestion?: Record<string, number>
}

/** The wire size of an answer: tensors in their canonical encoding, the rest as dag-cbor. */
function wireSize(question: keyof DisputeParty, answer: unknown): { bytes: number; tensors: number } {
  if (question === 'outputs') {
    const named = answer as NamedTensors
    const tensors = Object.values(named).reduce((s, t) => s + t.data.byteLength, 0)
    return { bytes: dagCbor.encode(encodeTensors(named)).byteLength, tensors }
  }
  const bytes = dagCbor.encode(answer).byteLength
  const chunks = question === 'chunks' ? (answer as Uint8Array[]) : []
  return { bytes, tensors: chunks.reduce((s, x) => s + x.byteLength, 0) }
}

/** `party`, with every answer counted into `meter`. */
export function metered(party: DisputeParty, meter: Meter): DisputeParty {
  const count =
    <A extends unknown[], T>(question: keyof DisputeParty, ask: (...args: A) => Promise<T>) =>
    async (...args: A): Promise<T> => {
      const answer = await ask(...args)
      const size = wireSize(question, answer)
      meter.answers++
      meter.bytes += size.bytes
      meter.tensorBytes += size.tensors
      meter.byQuestion ??= {}
      meter.byQuestion[question] = (meter.byQuestion[question] ?? 0) + size.bytes
      return answer
    }
  return {
    commitment: count('commitment', () => party.commitment()),
    children: count('children', (from: number, to: number) => party.children(from, to)),
    leaf: count('leaf', (p: number) => party.leaf(p)),
    outputs: count('outputs', (p: number) => party.outputs(p)),
    chunkHashes: count('chunkHashes', (p: number, name: string) => party.chunkHashes(p, name)),
    chunks: count('chunks', (p: number, name: string, indices: number[]) => party.chunks(p, name, indices)),
  }
}
