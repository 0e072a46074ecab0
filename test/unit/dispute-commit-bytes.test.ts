/**
 * Commitment bytes are a format: records already stored must still verify. These pin the roots,
 * leaves and chunk hashes of a fixed trace (special values, partial chunks, every dtype, every rule
 * kind) to hex computed before commitments were made fast, through either SHA-256 backend; any
 * change to them is a format change. Grid chunk hashes changed once, to 2-byte ordinals (dispute
 * protocol 2.0.0): only live disputes hash grids, so records stored before still verify.
 */
import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { quantise } from '../../src/dispute/cells.ts'
import { CHUNK, checkChunk, chunkHashes, chunkOf } from '../../src/dispute/chunks.ts'
import {
  type Committed,
  coarseLeafHash,
  commitTrace,
  disputePlan,
  disputeRules,
  exactLeafHash,
} from '../../src/dispute/commit.ts'
import { useNativeSha256 } from '../../src/dispute/digests.ts'
import type { NamedTensors, Tensor } from '../../src/shared/tensor.ts'
import type { CompareRule } from '../../src/trust/policy.ts'
import { onnxModel } from '../helpers/onnx-graph.ts'

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
const fingerprint = (parts: Uint8Array[]) => {
  const h = createHash('sha256')
  for (const p of parts) h.update(p)
  return h.digest('hex')
}

/** Float32 values over every magnitude, with NaN payloads, ±0, ±Inf, subnormals and grid lines. */
function specials(n: number, seed: number): Float32Array {
  let s = seed
  const r = () => {
    s = (s * 1103515245 + 12345) % 2 ** 31
    return s / 2 ** 31
  }
  const out = new Float32Array(n)
  const bits = new Uint32Array(out.buffer)
  const fixed = [0, -0, 1e-3, 5e-4, -5e-4, 1.5e-3, 0.1, 0.125, 1, 2, -2, 1e-40, -1e-40, 3.4e38, -3.4e38]
  for (let i = 0; i < n; i++) {
    const k = i % 97
    if (k === 0) bits[i] = 0x7fc00000 + (i & 0xff)
    else if (k === 1) bits[i] = 0xffc00001
    else if (k === 2) out[i] = Number.POSITIVE_INFINITY
    else if (k === 3) out[i] = Number.NEGATIVE_INFINITY
    else if (k === 4)
      bits[i] = (Math.floor(r() * 0x7fffff) | 1) >>> 0 // subnormal
    else if (k < 5 + fixed.length) out[i] = fixed[k - 5]!
    else if (k < 40)
      out[i] = Math.round((r() * 2 - 1) * 4000) * 5e-4 // on and between grid lines
    else out[i] = (r() * 2 - 1) * 10 ** Math.floor(r() * 16 - 8)
  }
  return out
}

const f32 = (dims: number[], seed: number): Tensor => ({
  dtype: 'float32',
  dims,
  data: specials(
    dims.reduce((a, b) => a * b, 1),
    seed,
  ),
})

const model = onnxModel({
  name: 'pinned',
  nodes: [
    { op: 'Identity', inputs: ['x'], outputs: ['a'] },
    { op: 'Split', inputs: ['a'], outputs: ['s0', 's1'] },
    { op: 'Cast', inputs: ['s0'], outputs: ['i64'] },
    { op: 'Cast', inputs: ['s1'], outputs: ['u8'] },
    { op: 'MatMul', inputs: ['s1', 'i64'], outputs: ['y'] },
    { op: 'Cast', inputs: ['y'], outputs: ['z'] },
  ],
  inputs: [{ name: 'x', dtype: 'float32', dims: [3, 1000] }],
  outputs: [
    { name: 'y', dtype: 'float32', dims: [4, 300] },
    { name: 'z', dtype: 'int32', dims: [5] },
  ],
})

const trace: NamedTensors = {
  a: f32([3, 1000], 1),
  s0: f32([1, 2048], 2),
  s1: f32([2, 1], 3),
  i64: {
    dtype: 'int64',
    dims: [7],
    data: BigInt64Array.from([0n, -1n, 2n ** 62n, 5n, -(2n ** 63n), 7n, 9n]),
  },
  u8: { dtype: 'uint8', dims: [1030], data: Uint8Array.from({ length: 1030 }, (_, i) => (i * 37) & 0xff) },
  y: f32([4, 300], 4),
  z: { dtype: 'int32', dims: [5], data: Int32Array.from([3, -3, 2 ** 31 - 1, -(2 ** 31), 0]) },
}

const RULES: [string, CompareRule, { root: string; leaf0: string; leaf4: string; all: string }][] = [
  [
    'exact',
    { kind: 'exact' },
    {
      root: '78bd5f4b5ce09d8984f2ace818c80c0c8e235cf9ca08c66526d3f93b63602598',
      leaf0: 'fa3f93dc6055a4cf477f162734bf090fcd2e7394f9fca15e3e695b1c34146481',
      leaf4: '870d74142a3ad22950819480d827b850f67f9978b3f8a8581b42a6317628df82',
      all: 'e7406561e3e9e88fc0d539a8830055736bb488572f01ed77b84a6b990f5a1d17',
    },
  ],
  [
    'tolerance',
    { kind: 'tolerance', atol: 1e-3, rtol: 1e-3 },
    {
      root: '5fa51dc97933419b5942d6bc3d43a72f126148972587770db77292feb8a0ede0',
      leaf0: '7c7847329e2d46950adf859fafaa7843a3293348df7c4448766b5db240afc492',
      leaf4: '1495c25053ccbdb31dc20f501cda2678ffe1d41ab1439e10a91b33edc9bc6ee8',
      all: '02e2905d2f7f53db6e8e59543a26e0aa14b4bec82f99ce1a2636f15aef284934',
    },
  ],
  [
    'rtol only',
    { kind: 'tolerance', atol: 0, rtol: 1e-3, perOutput: { z: { atol: 1e-6, rtol: 0.25 } } },
    {
      root: 'f330f20c9ebc24b428fb97e83cfd2a1945ba2fc3ddc4d8edb0c775d7f6b41042',
      leaf0: '7c7847329e2d46950adf859fafaa7843a3293348df7c4448766b5db240afc492',
      leaf4: 'f7a57a0895f0cf46eb73f56466d0d400ae58d0b0661dcb9bc13a5f7b8ffb0b9d',
      all: '0d3c6786fb0be599c8552f9a36b4052b98a53d8529d32a602b7547d3fb4935ab',
    },
  ],
  [
    'atol only',
    { kind: 'tolerance', atol: 1e-3, rtol: 0 },
    {
      root: 'cb034de023288dfbd2dfd7968551338b60a5d6d3fb47490dc51f628ccacc7fb7',
      leaf0: '7c7847329e2d46950adf859fafaa7843a3293348df7c4448766b5db240afc492',
      leaf4: 'a18e8feca01a37981a03b9ce7a1d08442fae7d7248d44f4d54c08c9588d97972',
      all: 'bcd690196b4f3b9065aa4ea884d5a888ae04a1ec4b2b62c554a5e9fd1fb5ea1f',
    },
  ],
  [
    'argmax',
    { kind: 'argmax' },
    {
      root: '20a1ad352ad6e876d03af71cb1c7dde87665c0105318e27b76ff4ec38319c1e8',
      leaf0: '7c7847329e2d46950adf859fafaa7843a3293348df7c4448766b5db240afc492',
      leaf4: '3abd8bc3e144bcfa9d57f2b9dfc74c6d5e0cf509f2cd69ba18246675bc1cbdf0',
      all: 'd2c26e1b9729a29a421c75a20deec654afe689511c27bfec2e71858572474e91',
    },
  ],
  [
    'top-3',
    { kind: 'topk', k: 3, outputs: ['y'] },
    {
      root: '4200a4391946a5661e0d2268f582ae4ad27708a1f655bc7af7ae5308a281388d',
      leaf0: '7c7847329e2d46950adf859fafaa7843a3293348df7c4448766b5db240afc492',
      leaf4: '4e56f4ee583d22e3d37152e641e71288b9b46bc60ef22d670ce557dac53b202f',
      all: 'c5f3ca7798fe672561bf6df468b615971c1c33393355de5579217382710cc986',
    },
  ],
]

/** Everything a commitment holds, in a fixed order. */
function allBytes(c: Committed): Uint8Array[] {
  const parts = [c.commitment.root, c.commitment.coarse, c.commitment.exact]
  for (let i = 0; i < c.leaves.length; i++) parts.push(...c.coarseTree.proof(i), ...c.exactTree.proof(i))
  for (const leaf of c.leaves)
    for (const o of leaf.outputs) {
      parts.push(o.exact, o.coarse ?? new Uint8Array(1), o.shifted ?? new Uint8Array(2))
      const h = c.chunks[o.name]!
      parts.push(...h.exact, ...(h.coarse ?? []), ...(h.shifted ?? []))
    }
  return parts
}

describe.each([
  ['native SHA-256', true],
  ['WebCrypto', false],
])('dispute commitment bytes (%s)', (_, native) => {
  beforeAll(() => {
    expect(useNativeSha256(native)).toBe(native) // Node hashes natively
  })
  afterAll(() => useNativeSha256(true))
  const plan = disputePlan(model)
  it.each(RULES)('are unchanged under %s', async (_, rule, pinned) => {
    const c = await commitTrace(plan, disputeRules(rule), trace)
    const got = {
      root: hex(c.commitment.root),
      leaf0: hex(await exactLeafHash(c.leaves[0]!)),
      leaf4: hex(await coarseLeafHash(c.leaves[4]!)),
      all: fingerprint(allBytes(c)),
    }
    expect(got).toEqual(pinned)
  })

  it.each([
    [1e-3, 0, 'fdd59bc8b24d4fccbe7c309cf6492afb6cef351f26439144daf9da5b7208b09e'],
    [0, 1e-3, 'bce24e6e8cda96857c51f4ed240fdfa107e3b282fe983d254331f5c979a30dd9'],
    [1e-3, 1e-3, '005b0e74ac4d5a7ec4f263aa66dee49041e0103d763211fa415ff97336dd1d6d'],
    [1e-4, 1e-5, '44c3ae2611563f984e6888a39abb15633cd685404bccb10010bdf978e267fd95'],
    [1e-6, 0.25, 'e648f8b736b58c69a0069f86ac1902d09ee90b6fd838453dfa7591485dd03aa0'],
    [0, 0, '65d08c66a0624434a603dc5e69ce403aa6408b841572f7d6439bb0da496a1427'],
  ])('are unchanged for chunk hashes and cells at atol %s, rtol %s', async (atol, rtol, pinned) => {
    const t = f32([3 * CHUNK + 17], 9)
    const h = await chunkHashes(t, { atol, rtol })
    const cells = [false, true].map((s) => quantise(t.data as Float32Array, atol, rtol, s))
    const got = fingerprint([...h.exact, ...h.coarse!, ...h.shifted!, ...cells])
    expect(got).toBe(pinned)
    for (let i = 0; i < 4; i++) await checkChunk(h, i, chunkOf(t, i), { atol, rtol })
  })

  it('are unchanged over more chunks than one batch', async () => {
    const t = f32([70 * CHUNK + 5], 11)
    const n = 70 * CHUNK + 3
    const data = BigInt64Array.from({ length: n }, (_, i) =>
      BigInt.asIntN(64, BigInt(i) * 0x9e3779b97f4a7c15n),
    )
    const i64: Tensor = { dtype: 'int64', dims: [n], data }
    const tol = { atol: 1e-3, rtol: 1e-2 }
    const [a, b, d] = await Promise.all([chunkHashes(t, tol), chunkHashes(t), chunkHashes(i64, tol)])
    const got = fingerprint([
      ...a.exact,
      ...a.coarse!,
      ...a.shifted!,
      ...b.exact,
      ...d.exact,
      ...d.coarse!,
      ...d.shifted!,
    ])
    expect(got).toBe('469dc03edd29a136edc17e5d204cc7af05050696b07f4880dc89b82a67980d27')
  })
})
