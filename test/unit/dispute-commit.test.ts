/**
 * Dispute commitments (src/dispute/commit.ts, merkle.ts): the quantised grid never puts values beyond
 * the tolerance in one cell, straddles happen at about drift/step, Merkle proofs hold for every leaf
 * of every tree size and fail for any change.
 */
import { describe, expect, it } from 'vitest'
import { gridBytes, quantise } from '../../src/dispute/cells.ts'
import { coarseHash, disputeRules, exactHash, tensorsAgree } from '../../src/dispute/commit.ts'
import { merkleTree, rootFromProof, sameBytes, verifyProof } from '../../src/dispute/merkle.ts'
import type { Tensor } from '../../src/shared/tensor.ts'

const f32 = (xs: number[], dims = [xs.length]): Tensor => ({
  dtype: 'float32',
  dims,
  data: Float32Array.from(xs),
})
const cells = (x: number, atol: number, rtol: number) =>
  Array.from(quantise(Float32Array.of(x), atol, rtol)).join()

function rng(seed: number) {
  let s = seed
  return () => {
    s = (s * 1103515245 + 12345) % 2 ** 31
    return s / 2 ** 31
  }
}

describe('dispute commitments', () => {
  it.each([
    [1e-3, 0],
    [0, 1e-3],
    [1e-3, 1e-3],
    [1e-4, 1e-5],
    [1e-6, 0.25],
  ])('puts values in one cell only when within atol %s + rtol %s', (atol, rtol) => {
    const r = rng(7)
    let same = 0
    for (let i = 0; i < 20_000; i++) {
      const scale = 10 ** Math.floor(r() * 10 - 5)
      const a = Math.fround((r() * 2 - 1) * scale)
      const b = Math.fround(a + (r() * 2 - 1) * (atol + rtol * Math.abs(a)) * 3 * r())
      if (cells(a, atol, rtol) !== cells(b, atol, rtol)) continue
      same++
      // same cell ⇒ allclose either way round (up to one rounding of x / atol)
      const bound = (atol + rtol * Math.min(Math.abs(a), Math.abs(b))) * (1 + 1e-12)
      expect(Math.abs(a - b), `${a} ${b}`).toBeLessThanOrEqual(bound)
    }
    expect(same).toBeGreaterThan(1000)
  })

  // the share of values with 2-byte ordinals at least (atol 0: binades from 2^-149 up take them all)
  it.each([
    [1e-3, 1e-2, 0.9],
    [1e-3, 1e-3, 0.5],
    [1e-3, 0, 0.3],
    [0, 1e-3, 0],
    [1e-6, 0.25, 0.9],
    [1e-4, 1e-5, 0.03],
  ])('numbers cells at atol %s, rtol %s with 2-byte ordinals one to one', (atol, rtol, share) => {
    // values from 1e-7 to 1e7 either sign, and their neighbours a cell or less away
    const r = rng(11)
    const xs: number[] = [0, -0]
    for (let i = 0; i < 10_000; i++) {
      const a = (r() < 0.5 ? -1 : 1) * 10 ** (r() * 14 - 7)
      xs.push(Math.fround(a), Math.fround(a + (atol + rtol * Math.abs(a)) * (r() - 0.5)))
    }
    for (const shifted of [false, true]) {
      const byOrd = new Map<string, string>()
      const byCell = new Map<string, string>()
      let compact = 0
      for (const x of xs) {
        const ord = gridBytes(Float32Array.of(x), { atol, rtol })[shifted ? 1 : 0]
        if (ord.byteLength !== 2) continue // no 2-byte ordinal: hashed as the cell itself
        compact++
        const [o, cell] = [
          Array.from(ord).join(),
          Array.from(quantise(Float32Array.of(x), atol, rtol, shifted)).join(),
        ]
        expect(byOrd.get(o) ?? cell, `ordinal ${o} of ${x}`).toBe(cell)
        expect(byCell.get(cell) ?? o, `cell of ${x}`).toBe(o)
        byOrd.set(o, cell)
        byCell.set(cell, o)
      }
      expect(compact).toBeGreaterThanOrEqual(share * xs.length)
      if (share === 0) expect(compact).toBe(0)
    }
  })

  it('hashes special values to stable cells', () => {
    expect(cells(-0, 1e-3, 1e-3)).toBe(cells(0, 1e-3, 1e-3))
    expect(cells(Number.NaN, 1e-3, 1e-3)).toBe(cells(-Number.NaN, 1e-3, 1e-3))
    expect(cells(Number.POSITIVE_INFINITY, 1e-3, 0)).not.toBe(cells(3e38, 1e-3, 0))
    expect(cells(1e-40, 0, 1e-3)).not.toBe(cells(2e-40, 0, 1e-3)) // subnormals stay exact with atol 0
  })

  it('straddles at about drift / step per element', async () => {
    const r = rng(3)
    const n = 100_000
    const a = new Float32Array(n).map(() => r() * 2 - 1)
    const b = a.map((x) => x + 1e-7 * (r() * 2 - 1))
    const qa = quantise(a, 1e-3, 0)
    const qb = quantise(b, 1e-3, 0)
    let straddles = 0
    for (let i = 0; i < n; i++)
      if (qa.subarray(8 * i, 8 * i + 8).some((x, k) => x !== qb[8 * i + k])) straddles++
    // expected n · E|drift| / step = 1e5 · 0.5e-7 / 1e-3 = 5
    expect(straddles).toBeLessThan(30)
    const rule = { kind: 'tolerance', atol: 1e-3, rtol: 0 } as const
    expect(tensorsAgree('t', f32([...a]), f32([...b]), rule)).toBe(true)
  })

  it('commits to top-k indices for classification outputs, to bytes for exact', async () => {
    const topk = { kind: 'topk', k: 2 } as const
    const x = f32([0.1, 0.9, 0.5, 0.2, 0.3, 0.25, 0.8, 0.1], [2, 4])
    const y = f32([0.1, 0.8, 0.6, 0.2, 0.3, 0.29, 0.7, 0.1], [2, 4])
    expect(sameBytes(await coarseHash(x, topk), await coarseHash(y, topk))).toBe(true)
    expect(sameBytes(await exactHash(x), await exactHash(y))).toBe(false)
    expect(await coarseHash(x, { kind: 'exact' })).toBeUndefined()
    expect(await coarseHash({ dtype: 'int32', dims: [1], data: Int32Array.of(1) }, topk)).toBeDefined()
    expect(disputeRules({ kind: 'tolerance', atol: 1e-4, rtol: 0 }).node).toEqual({
      kind: 'tolerance',
      atol: 1e-3,
      rtol: 1e-2,
    })
    expect(disputeRules({ kind: 'exact' }).node).toEqual({ kind: 'exact' })
  })

  it('proves every leaf of trees of 1 to 40 leaves and rejects any change', async () => {
    for (let size = 1; size <= 40; size++) {
      const leaves = await Promise.all(Array.from({ length: size }, (_, i) => exactHash(f32([i]))))
      const tree = await merkleTree(leaves)
      for (let i = 0; i < size; i++) {
        const proof = tree.proof(i)
        expect(proof.length).toBeLessThanOrEqual(Math.ceil(Math.log2(size)))
        expect(await verifyProof(tree.root, size, i, leaves[i]!, proof)).toBe(true)
        if (size > 1) {
          expect(await verifyProof(tree.root, size, (i + 1) % size, leaves[i]!, proof)).toBe(false)
          const bent = proof.map((h, k) => (k === 0 ? Uint8Array.from(h, (x, j) => (j ? x : x ^ 1)) : h))
          expect(await verifyProof(tree.root, size, i, leaves[i]!, bent)).toBe(false)
        }
        expect(await rootFromProof(size, i, leaves[i]!, proof.slice(1))).toBe(size === 1 ? leaves[i] : null)
      }
    }
  })
})
