/**
 * Merkle trees over leaf hashes, split as in RFC 6962 (the left subtree holds the largest power of
 * two below n), so a proof is at most ceil(log2 n) hashes and the last leaves sit shallower.
 * A leaf is its own hash (leaves here are already tagged digests); an inner node is
 * SHA-256(0x01 ‖ left ‖ right).
 */
import { sha256Of } from './digests.ts'

export interface MerkleTree {
  root: Uint8Array
  size: number
  /** The hash of the subtree over leaves [from, to); undefined if that is not a subtree. */
  node(from: number, to: number): Uint8Array | undefined
  /** Sibling hashes from the leaf up to the root. */
  proof(index: number): Uint8Array[]
}

/** Where a subtree of n > 1 leaves splits: the largest power of two below n. */
export function split(n: number): number {
  let k = 1
  while (k * 2 < n) k *= 2
  return k
}

export const nodeKey = (from: number, to: number): string => `${from}:${to}`

export function innerHash(left: Uint8Array, right: Uint8Array): Promise<Uint8Array> {
  const bytes = new Uint8Array(1 + left.byteLength + right.byteLength)
  bytes[0] = 1
  bytes.set(left, 1)
  bytes.set(right, 1 + left.byteLength)
  return sha256Of(bytes)
}

export function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (!a || !b || a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}

export async function merkleTree(leaves: readonly Uint8Array[]): Promise<MerkleTree> {
  if (leaves.length === 0) throw new RangeError('a Merkle tree needs a leaf')
  const nodes = new Map<string, Uint8Array>()
  const build = async (from: number, to: number): Promise<Uint8Array> => {
    if (to - from === 1) return leaves[from]!
    const mid = from + split(to - from)
    const [l, r] = await Promise.all([build(from, mid), build(mid, to)])
    const h = await innerHash(l, r)
    nodes.set(nodeKey(from, to), h)
    return h
  }
  const root = await build(0, leaves.length)
  const node = (from: number, to: number) => (to - from === 1 ? leaves[from] : nodes.get(nodeKey(from, to)))
  const proof = (index: number): Uint8Array[] => {
    const path: Uint8Array[] = []
    let [from, to] = [0, leaves.length]
    while (to - from > 1) {
      const mid = from + split(to - from)
      if (index < mid) {
        path.push(node(mid, to)!)
        to = mid
      } else {
        path.push(node(from, mid)!)
        from = mid
      }
    }
    return path.reverse()
  }
  return { root, size: leaves.length, node, proof }
}

/** Whether leaf `index` is left (true) or right of each split on its way down, top first. */
function turns(size: number, index: number): boolean[] {
  const out: boolean[] = []
  let [from, to] = [0, size]
  while (to - from > 1) {
    const mid = from + split(to - from)
    out.push(index < mid)
    if (index < mid) to = mid
    else from = mid
  }
  return out
}

/** The root a proof leads to, or null if the proof has the wrong length for that leaf. */
export async function rootFromProof(
  size: number,
  index: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
): Promise<Uint8Array | null> {
  if (!Number.isInteger(index) || index < 0 || index >= size) return null
  const path = turns(size, index).reverse()
  if (path.length !== proof.length) return null
  let h = leaf
  for (let i = 0; i < path.length; i++)
    h = path[i] ? await innerHash(h, proof[i]!) : await innerHash(proof[i]!, h)
  return h
}

export async function verifyProof(
  root: Uint8Array,
  size: number,
  index: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
): Promise<boolean> {
  return sameBytes((await rootFromProof(size, index, leaf, proof)) ?? undefined, root)
}
