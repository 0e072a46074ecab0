/** Comparison rules, policy checks and offline quorum records. */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import { bisect } from '../../src/dispute/bisect.ts'
import { commitTrace, disputePlan, disputeRules } from '../../src/dispute/commit.ts'
import { withIntermediateOutputs } from '../../src/dispute/onnx-graph.ts'
import { localParty } from '../../src/dispute/party.ts'
import { buildDisputeRecord, encodeDisputeRecord } from '../../src/dispute/record.ts'
import { referee } from '../../src/dispute/referee.ts'
import { signCommitment } from '../../src/dispute/wire-frames.ts'
import { modelCid } from '../../src/shared/cid.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { tensorsCid } from '../../src/shared/tensor-codec.ts'
import { outputsAgree } from '../../src/trust/compare.ts'
import { checkPolicy, policyFor } from '../../src/trust/policy.ts'
import {
  buildQuorumRecord,
  encodeQuorumRecord,
  type QuorumDispute,
  type QuorumRecord,
  verifyQuorumRecord,
} from '../../src/trust/quorum-record.ts'
import { signReceipt } from '../../src/trust/receipt.ts'
import { lyingTrace, shifted } from '../helpers/liar-trace.ts'
import { floats, ortRun } from '../helpers/ort-run.ts'

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

describe('quorum records settled by dispute', () => {
  const compare = { kind: 'tolerance' as const, atol: 1e-4, rtol: 1e-4 }
  const bytes = new Uint8Array(
    readFileSync(resolve(import.meta.dirname, '../../public/models/mlp-tiny.onnx')),
  )
  const plan = disputePlan(bytes)
  const rules = disputeRules(compare)
  const inputs: NamedTensors = { x: floats([1, 16], 7) }

  /**
   * An honest worker (side a) and a liar (side b, wrong from leaf 0 on), disputed in process; a
   * third honest worker agrees with side a. `alone`: side a stands alone (quorum 1, one member).
   */
  async function settled(alone = false) {
    const model = await modelCid(bytes)
    const input = await tensorsCid(inputs)
    const honest = await ortRun(withIntermediateOutputs(plan.model), inputs)
    const liar = await lyingTrace(plan, honest, inputs, 0, shifted(0.5))
    const out = plan.model.outputs[0]!
    const side = async (trace: NamedTensors, job: CID) => {
      const key = await generateKeyPair('Ed25519')
      const worker = peerIdFromPrivateKey(key).toString()
      const committed = await commitTrace(plan, rules, trace)
      const outputs = { [out]: trace[out]! }
      const receipt = await signReceipt(
        {
          v: 1,
          job,
          model,
          input,
          output: await tensorsCid(outputs),
          worker,
          requester: 'requester',
          ep: 'wasm',
          adapter: 'none',
          timing: { queueUs: 1, runUs: 2 },
          ts: 3,
        },
        key,
      )
      const { root, leaves } = committed.commitment
      const signed = await signCommitment({ job, model, input, root, leaves }, key)
      return { party: localParty(plan, committed, trace), outputs, disputant: { worker, signed, receipt } }
    }
    const a = await side(honest, await tensorsCid(t(1)))
    const b = await side(liar, await tensorsCid(t(2)))
    const c = await side(honest, await tensorsCid(t(3)))
    const divergence = await bisect({ plan, rules, a: a.party, b: b.party })
    const settlement = await referee({
      plan,
      rules,
      divergence,
      a: a.party,
      b: b.party,
      jobInputs: inputs,
      run: ortRun,
    })
    expect(settlement.verdict).toBe('b-invalid')
    const record = encodeDisputeRecord(buildDisputeRecord({ model, plan, rules, divergence, settlement }))
    const dispute: QuorumDispute = { record, side: 'a', a: a.disputant, b: b.disputant }
    const members = [a, ...(alone ? [] : [c])].map((x) => ({
      receipt: x.disputant.receipt,
      outputs: x.outputs,
    }))
    const quorum = buildQuorumRecord(members, alone ? 1 : 2, compare, dispute)
    return { quorum, a, b, c }
  }
  const tampered = (r: QuorumRecord, change: (copy: QuorumRecord) => void) => {
    const copy = dagCbor.decode(encodeQuorumRecord(r)) as QuorumRecord
    change(copy)
    return dagCbor.encode(copy)
  }

  it('verifies two members beside a dispute that shows the other side invalid, with and without the model', async () => {
    const { quorum, a, b, c } = await settled()
    const bytesOf = encodeQuorumRecord(quorum)
    const light = await verifyQuorumRecord(bytesOf)
    expect(light.workers).toEqual([a.disputant.worker, c.disputant.worker])
    expect(light.dispute).toEqual({
      verdict: 'b-invalid',
      other: b.disputant.worker,
      checked: 'commitments',
      proven: false,
    })
    const full = await verifyQuorumRecord(bytesOf, 2, { plan, run: ortRun })
    expect(full.dispute).toMatchObject({ checked: 'record', proven: true })
    // The referee is no check of the member's whole result: a quorum of 3 is not met.
    await expect(verifyQuorumRecord(bytesOf, 3)).rejects.toMatchObject({ name: 'QuorumNotMetError' })
  })

  it('verifies a side that stood alone as one result (quorum 1), never as a quorum of two', async () => {
    const { quorum, a } = await settled(true)
    const bytesOf = encodeQuorumRecord(quorum)
    expect((await verifyQuorumRecord(bytesOf)).workers).toEqual([a.disputant.worker])
    await expect(verifyQuorumRecord(bytesOf, 2)).rejects.toMatchObject({ name: 'QuorumNotMetError' })
    // A record from before this rule: one member claiming quorum 2 with the referee as the second.
    const claimed = tampered(quorum, (x) => {
      x.quorum = 2
    })
    await expect(verifyQuorumRecord(claimed)).rejects.toMatchObject({ name: 'QuorumNotMetError' })
  })

  it('rejects a tampered dispute', async () => {
    const { quorum, a } = await settled()
    const bad = { name: 'InvalidDisputeRecordError' }
    const cases: [string, (c: QuorumRecord) => void][] = [
      [
        'the member claimed as the liar',
        (c) => {
          c.dispute!.side = 'b'
        },
      ],
      [
        'sides swapped',
        (c) => {
          ;[c.dispute!.a, c.dispute!.b] = [c.dispute!.b, c.dispute!.a]
        },
      ],
      [
        "the liar's commitment re-signed by the member",
        (c) => {
          c.dispute!.b.signed = a.disputant.signed
        },
      ],
      [
        'a forged signature',
        (c) => {
          c.dispute!.b.signed!.sig = new Uint8Array(64)
        },
      ],
      [
        'the verdict turned to drift',
        (c) => {
          const r = dagCbor.decode(c.dispute!.record) as Record<string, unknown>
          c.dispute!.record = dagCbor.encode({ ...r, verdict: 'drift', closer: 'b' })
        },
      ],
      [
        'a commitment that is not the signed one',
        (c) => {
          const r = dagCbor.decode(c.dispute!.record) as { b: { commitment: { coarse: Uint8Array } } }
          r.b.commitment.coarse = new Uint8Array(32)
          c.dispute!.record = dagCbor.encode(r)
        },
      ],
      [
        'not a record',
        (c) => {
          c.dispute!.record = Uint8Array.of(1, 2, 3)
        },
      ],
    ]
    for (const [what, change] of cases) {
      await expect(verifyQuorumRecord(tampered(quorum, change)), what).rejects.toMatchObject(bad)
    }
    // A record that claims a verdict its evidence does not give fails once the model is at hand.
    const judged = tampered(quorum, (c) => {
      const r = dagCbor.decode(c.dispute!.record) as { b: { judged: string } }
      r.b.judged = 'ok'
      c.dispute!.record = dagCbor.encode({ ...r, verdict: 'drift', closer: 'a' })
    })
    await expect(verifyQuorumRecord(judged)).resolves.toBeDefined() // signatures alone cannot tell
    await expect(verifyQuorumRecord(judged, 1, { plan })).rejects.toMatchObject(bad)
    // The dispute is evidence against side b, not a member's vote: without it the two still agree.
    const bare = tampered(quorum, (c) => {
      delete c.dispute
    })
    expect((await verifyQuorumRecord(bare)).dispute).toBeUndefined()
    // The side the verdict accepts must be a member.
    const gone = tampered(quorum, (c) => {
      c.members = c.members.slice(1)
      c.quorum = 1
    })
    await expect(verifyQuorumRecord(gone)).rejects.toMatchObject(bad)
  })

  it('still verifies records from before disputes', async () => {
    const old = encodeQuorumRecord(
      buildQuorumRecord([await member(t(1, 2)), await member(t(1, 2))], 2, compare),
    )
    expect((dagCbor.decode(old) as Record<string, unknown>).dispute).toBeUndefined()
    const r = await verifyQuorumRecord(old)
    expect(r.workers).toHaveLength(2)
    expect(r.dispute).toBeUndefined()
  })
})
