/** Comparison rules, policy checks and offline quorum records. */
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { tensorsCid } from '../../src/shared/tensor-codec.ts'
import { outputsAgree } from '../../src/trust/compare.ts'
import { checkPolicy, policyFor } from '../../src/trust/policy.ts'
import { buildQuorumRecord, encodeQuorumRecord, verifyQuorumRecord } from '../../src/trust/quorum-record.ts'
import { signReceipt } from '../../src/trust/receipt.ts'

const cid = CID.parse('bafkreidyllbzbuwb2fdgttvsc6notidx5yr5wgl6z2qhcptapjy3pkxbja')
const t = (...v: number[]): NamedTensors => ({
  y: { dtype: 'float32', dims: [1, v.length], data: Float32Array.from(v) },
})
const rep = async (o: NamedTensors) => ({ outputs: o, outputCid: (await tensorsCid(o)).toString() })

async function member(o: NamedTensors, given?: Awaited<ReturnType<typeof generateKeyPair>>) {
  const key = given ?? (await generateKeyPair('Ed25519'))
  const receipt = await signReceipt(
    {
      v: 1,
      job: cid,
      model: cid,
      input: cid,
      output: await tensorsCid(o),
      worker: peerIdFromPrivateKey(key).toString(),
      requester: 'requester',
      ep: 'wasm',
      adapter: 'none',
      timing: { queueUs: 1, runUs: 2 },
      ts: 3,
    },
    key,
  )
  return { receipt, outputs: o }
}

describe('comparison rules', () => {
  it('exact needs identical CIDs; tolerance allows small differences', async () => {
    const a = await rep(t(1, 2))
    const b = await rep(t(1, 2.00001))
    expect(outputsAgree(a, b, { kind: 'exact' })).toBe(false)
    expect(outputsAgree(a, b, { kind: 'tolerance', atol: 1e-4, rtol: 0 })).toBe(true)
    expect(outputsAgree(a, b, { kind: 'tolerance', atol: 1e-7, rtol: 0 })).toBe(false)
  })

  it('argmax and top-k compare rankings, not values', async () => {
    const a = await rep(t(0.1, 0.7, 0.2))
    const b = await rep(t(0.2, 0.5, 0.3))
    expect(outputsAgree(a, b, { kind: 'argmax' })).toBe(true)
    expect(outputsAgree(a, b, { kind: 'topk', k: 2 })).toBe(true)
    expect(outputsAgree(a, await rep(t(0.9, 0.05, 0.05)), { kind: 'argmax' })).toBe(false)
  })

  it('rejects bad policies with a named error', () => {
    expect(() => policyFor('tensor', { redundancy: 6 })).toThrow(
      expect.objectContaining({ name: 'InvalidPolicyError' }),
    )
    expect(() => policyFor('tensor', { redundancy: 2, quorum: 3 })).toThrow(
      expect.objectContaining({ name: 'InvalidPolicyError' }),
    )
    expect(() =>
      checkPolicy({ ...policyFor('tensor'), compare: { kind: 'tolerance', atol: -1, rtol: 0 } }),
    ).toThrow(expect.objectContaining({ name: 'InvalidPolicyError' }))
    expect(policyFor('ocr-rec').compare.kind).toBe('argmax')
    expect(policyFor(undefined, { redundancy: 1 }).quorum).toBe(1)
  })
})

describe('quorum records', () => {
  const rule = { kind: 'tolerance' as const, atol: 1e-4, rtol: 0 }

  it('verifies a genuine record offline', async () => {
    const bytes = encodeQuorumRecord(
      buildQuorumRecord([await member(t(1, 2)), await member(t(1, 2.00001))], 2, rule),
    )
    const r = await verifyQuorumRecord(bytes)
    expect(r.workers).toHaveLength(2)
  })

  it('rejects disagreeing members, a repeated worker, swapped outputs, and a short quorum', async () => {
    const key = await generateKeyPair('Ed25519')
    const a = await member(t(1, 2), key)
    const disagree = encodeQuorumRecord(buildQuorumRecord([a, await member(t(5, 2))], 2, rule))
    await expect(verifyQuorumRecord(disagree)).rejects.toMatchObject({ name: 'InvalidReceiptError' })
    const twice = encodeQuorumRecord(buildQuorumRecord([a, await member(t(1, 2), key)], 2, rule))
    await expect(verifyQuorumRecord(twice)).rejects.toMatchObject({ name: 'InvalidReceiptError' })
    const rec = buildQuorumRecord([a, await member(t(1, 2))], 2, rule)
    const swapped = dagCbor.decode(encodeQuorumRecord(rec)) as typeof rec
    swapped.members[0]!.outputs = { y: { ...swapped.members[0]!.outputs.y!, data: new Uint8Array(8) } }
    await expect(verifyQuorumRecord(dagCbor.encode(swapped))).rejects.toMatchObject({
      name: 'InvalidReceiptError',
    })
    const short = encodeQuorumRecord(buildQuorumRecord([a], 2, rule))
    await expect(verifyQuorumRecord(short)).rejects.toMatchObject({ name: 'QuorumNotMetError' })
    await expect(
      verifyQuorumRecord(encodeQuorumRecord(buildQuorumRecord([a], 1, rule)), 2),
    ).rejects.toMatchObject({
      name: 'QuorumNotMetError',
    })
  })
})
