/**
 * Dispute records over cuts (src/dispute/record-cuts.ts) from real disputes on PP-OCR detection
 * (onnxruntime-node): a record verifies without the model by its signatures, with the plan by its
 * evidence, and proven with `run`; every tampering is refused as InvalidDisputeRecordError.
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { PrivateKey } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { beforeAll, describe, expect, it } from 'vitest'
import { bisectCuts, type CutDivergence } from '../../src/dispute/bisect-cuts.ts'
import {
  type DisputeRules,
  disputeRules,
  exactHash,
  leafNode,
  leafOutputs,
  producers,
} from '../../src/dispute/commit.ts'
import { CUT_DOMAIN, type CutBody, type CutJob, createCutCommitter } from '../../src/dispute/cut-commit.ts'
import { cutAt, cutPlan } from '../../src/dispute/cuts.ts'
import { verifyDisputeRecord } from '../../src/dispute/record.ts'
import {
  buildCutRecord,
  type CutDisputeRecord,
  checkCutRecordSignatures,
  encodeCutRecord,
  verifyCutRecord,
} from '../../src/dispute/record-cuts.ts'
import { claimedOutputs, refereeCuts } from '../../src/dispute/referee-cuts.ts'
import { modelCid } from '../../src/shared/cid.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { encodeTensors } from '../../src/shared/tensor-codec.ts'
import { generateIdentity, peerIdOf } from '../../src/trust/keys.ts'
import { signRecord } from '../../src/trust/signed.ts'
import { tracedJob } from '../helpers/cut-trace.ts'
import { lyingTrace, shifted } from '../helpers/liar-trace.ts'
import { floats, ortRun } from '../helpers/ort-run.ts'

const EXACT = disputeRules({ kind: 'exact' })
const TIGHT = disputeRules({ kind: 'tolerance', atol: 1e-9, rtol: 0 })
const LIAR = 150
type Traced = Awaited<ReturnType<typeof tracedJob>>

interface Contributor {
  trace: NamedTensors
  key: PrivateKey
  job: CutJob
  /** What its tensor() answers (default: its trace). */
  sent?: NamedTensors
}

/** Two contributors disputed over cuts, settled (on the divergence as `edit` leaves it) and recorded. */
async function recorded(
  t: Traced,
  rules: DisputeRules,
  a: Contributor,
  b: Contributor,
  edit?: (d: CutDivergence) => Promise<void>,
) {
  const party = (c: Contributor) => {
    const committer = createCutCommitter({ trace: c.trace, plan: t.plan, rules, key: c.key, ...c.job })
    return {
      cut: (p: number) => committer.commit(p),
      chunkHashes: (name: string) => committer.chunkHashes(name),
      chunks: (name: string, indices: number[]) => committer.chunks(name, indices),
      tensor: async (name: string) => (c.sent ?? c.trace)[name]!,
    }
  }
  const [pa, pb] = [party(a), party(b)]
  const workers = { a: peerIdOf(a.key), b: peerIdOf(b.key) }
  const { plan, inputs } = t
  const job = { a: a.job, b: b.job }
  const divergence = await bisectCuts({ plan, rules, a: pa, b: pb, workers, job, inputs })
  await edit?.(divergence)
  const settlement = await refereeCuts({
    plan,
    rules,
    divergence,
    a: pa,
    b: pb,
    jobInputs: inputs,
    run: ortRun,
  })
  const record = buildCutRecord({ model: t.job.model, plan, rules, divergence, settlement, workers })
  return { record, bytes: encodeCutRecord(record), settlement }
}

const refused = (p: Promise<unknown>, what: string) =>
  expect(p, what).rejects.toMatchObject({ name: 'InvalidDisputeRecordError' })
const flip = (h: Uint8Array, at = 0) => Uint8Array.from(h, (x, i) => (i === at ? x ^ 1 : x))
const bodyOf = (signed: Uint8Array) => dagCbor.decode<{ body: CutBody }>(signed).body
/** A signed cut as bisectCuts hands it on. */
const cutOf = (signed: Uint8Array) => ({
  signed,
  ...dagCbor.decode<{ body: CutBody; sig: Uint8Array }>(signed),
})
/** `bytes` decoded, changed by `change`, re-encoded. */
const tampered = (bytes: Uint8Array, change: (r: CutDisputeRecord) => void) => {
  const r = dagCbor.decode<CutDisputeRecord>(bytes)
  change(r)
  return dagCbor.encode(r)
}

describe('dispute records over cuts on PP-OCR detection', () => {
  let t: Traced
  let keys: PrivateKey[]
  let other: CID
  /** Each side's own signed job (replicas are separate jobs), on one model and input. */
  let jobs: { a: CutJob; b: CutJob }
  let liar: NamedTensors
  let lied: Awaited<ReturnType<typeof recorded>>
  const expectOf = () => ({ model: t.job.model, input: t.job.input, jobs: { a: jobs.a.job, b: jobs.b.job } })

  beforeAll(async () => {
    t = await tracedJob('vendor/ch_PP-OCRv4_det_infer.onnx', { x: floats([1, 3, 64, 256], 4) })
    keys = [await generateIdentity(), await generateIdentity()]
    other = await modelCid(new TextEncoder().encode('another job'))
    jobs = { a: t.job, b: { ...t.job, job: await modelCid(new TextEncoder().encode('replica b')) } }
    liar = { ...t.inputs, ...(await lyingTrace(t.plan, t.honest, t.inputs, LIAR, shifted(0.5))) }
    const a = { trace: t.honest, key: keys[0]!, job: jobs.a }
    lied = await recorded(t, EXACT, a, { trace: liar, key: keys[1]!, job: jobs.b })
  })

  it('a liar’s record: its signatures check without the model, its evidence with it, proven by a run', async () => {
    const { bytes, record } = lied
    expect([record.v, record.leaf, record.verdict, record.a.judged, record.b.judged]).toEqual([
      2,
      LIAR,
      'b-invalid',
      'ok',
      'wrong-output',
    ])
    await expect(checkCutRecordSignatures(bytes, expectOf())).resolves.toEqual({
      verdict: 'b-invalid',
      workers: { a: peerIdOf(keys[0]!), b: peerIdOf(keys[1]!) },
      leaf: LIAR,
    })
    const want = { verdict: 'b-invalid', position: LIAR, node: t.plan.leaves[LIAR] }
    await expect(verifyCutRecord(bytes, { plan: t.plan })).resolves.toEqual({
      ...want,
      proven: false,
      rerun: false,
    })
    await expect(verifyCutRecord(bytes, { plan: t.plan, model: t.job.model, run: ortRun })).resolves.toEqual({
      ...want,
      proven: true,
      rerun: true,
    })
    console.log(`det exact record, liar at ${LIAR}: ${bytes.byteLength} bytes`)
  })

  it('drift and bad-commitment records verify; only drift is proven', async () => {
    const drifted = Object.fromEntries(
      Object.entries(t.honest).map(([k, v]) => [k, k in t.inputs ? v : shifted(1e-5)(v)]),
    )
    const a = { trace: t.honest, key: keys[0]!, job: jobs.a }
    const drift = await recorded(t, TIGHT, a, { trace: drifted, key: keys[1]!, job: jobs.b })
    expect([drift.record.verdict, drift.record.closer]).toEqual(['drift', 'a'])
    await expect(verifyCutRecord(drift.bytes, { plan: t.plan, run: ortRun })).resolves.toMatchObject({
      verdict: 'drift',
      proven: true,
    })
    await expect(checkCutRecordSignatures(drift.bytes, expectOf())).resolves.toMatchObject({ closer: 'a' })
    for (const [what, change] of [
      ['closer flipped', (r) => (r.closer = 'b')],
      ['closer dropped', (r) => delete r.closer],
      ['claim moved off the recomputation', (r) => (r.b.outputs = r.b.refereeOutputs)],
    ] as [string, (r: CutDisputeRecord) => void][])
      await refused(verifyCutRecord(tampered(drift.bytes, change), { plan: t.plan }), what)

    // a computed on a changed leaf 120, its cuts commit to the honest one: its tensors give it away.
    const lie = { ...t.inputs, ...(await lyingTrace(t.plan, t.honest, t.inputs, 120, shifted(0.5))) }
    const claimed = { ...lie }
    for (const name of leafOutputs(leafNode(t.plan, 120))) claimed[name] = t.honest[name]!
    const b = { trace: t.honest, key: keys[1]!, job: jobs.b }
    const bad = await recorded(t, EXACT, { ...a, trace: claimed, sent: lie }, b)
    expect([bad.record.verdict, bad.record.a.judged]).toEqual(['a-invalid', 'bad-commitment'])
    await expect(verifyCutRecord(bad.bytes, { plan: t.plan, run: ortRun })).resolves.toMatchObject({
      verdict: 'a-invalid',
      proven: false,
    })
    // Its tensors swapped for the ones it committed to: nothing is wrong with them.
    const honestInputs = (r: CutDisputeRecord) => (r.a.inputs = r.b.inputs)
    await refused(verifyCutRecord(tampered(bad.bytes, honestInputs), { plan: t.plan }), 'honest inputs')
  })

  it('refuses tampered records', async () => {
    const { bytes } = lied
    const claimedExact = (r: CutDisputeRecord) =>
      bodyOf(r.b.hi).tensors.find((x) => leafOutputs(leafNode(t.plan, LIAR)).includes(x.name))!.exact
    const oversized = { dtype: 'float32', dims: [1 << 14, 1 << 13], data: new Uint8Array(4) }
    const firstInput = (r: CutDisputeRecord) => r.a.inputs![Object.keys(r.a.inputs!)[0]!]!
    /** [what, change, whether checkCutRecordSignatures (no plan) sees it too] */
    const cases: [string, (r: CutDisputeRecord) => void, boolean][] = [
      ['verdict flipped', (r) => (r.verdict = 'a-invalid'), true],
      ['judgement flipped', (r) => (r.b.judged = 'ok'), true],
      [
        'judgement and verdict flipped',
        (r) => Object.assign(r, { verdict: 'drift', b: { ...r.b, judged: 'ok' } }),
        false,
      ],
      ['closer under b-invalid', (r) => (r.closer = 'a'), true],
      ['a byte of a signature', (r) => (r.a.hi = flip(r.a.hi, r.a.hi.byteLength - 1)), true],
      ['a byte of a commitment', (r) => (r.b.lo = flip(r.b.lo, 60)), true],
      ['cut swapped between sides', (r) => (r.a.lo = r.b.lo), true],
      ['both cuts swapped, workers kept', (r) => ([r.a.hi, r.b.hi] = [r.b.hi, r.a.hi]), true],
      ['workers swapped', (r) => ([r.a.worker, r.b.worker] = [r.b.worker, r.a.worker]), true],
      ['same sides', (r) => (r.b = { ...r.a, judged: r.b.judged }), true],
      ['positions off', (r) => (r.leaf = LIAR - 1), true],
      ['lo cut from another position', (r) => (r.a.lo = r.a.hi), true],
      ['node', (r) => (r.node.index += 1), false],
      ['model', (r) => (r.model = other.toString()), true],
      ['rules', (r) => (r.rules = TIGHT), false],
      ['inputs changed', (r) => (firstInput(r).data = flip(firstInput(r).data)), false],
      ['inputs dropped', (r) => delete r.a.inputs, false],
      ['an input the node does not read', (r) => (r.a.inputs!.x = r.jobInputs.x ?? firstInput(r)), false],
      ['a job input the node does not read', (r) => (r.jobInputs.x = firstInput(r)), false],
      ['referee hash changed', (r) => (r.a.referee![0] = flip(r.a.referee![0]!)), false],
      ['referee hash the liar’s claim', (r) => (r.b.referee![0] = claimedExact(r)), false],
      ['referee hashes dropped', (r) => delete r.b.referee, false],
      ['oversized tensors', (r) => (r.a.inputs = { big: oversized } as never), true],
      ['oversized job inputs', (r) => (r.jobInputs = { big: oversized } as never), true],
      ['v1', (r) => ((r as { v: number }).v = 1), true],
    ]
    for (const [what, change, unsigned] of cases) {
      const changed = tampered(bytes, change)
      await refused(verifyCutRecord(changed, { plan: t.plan }), what)
      if (unsigned) await refused(checkCutRecordSignatures(changed, expectOf()), `${what} (no plan)`)
    }
    for (const bad of [
      bytes.subarray(0, bytes.byteLength - 1),
      new Uint8Array([0xff, 0x00]),
      dagCbor.encode([1]),
    ]) {
      await refused(verifyCutRecord(bad, { plan: t.plan }), 'malformed cbor')
      await refused(checkCutRecordSignatures(bad, expectOf()), 'malformed cbor (no plan)')
    }
    await refused(verifyCutRecord(bytes, { plan: t.plan, model: other }), 'another model')
    await refused(verifyDisputeRecord(bytes, { plan: t.plan }), 'a v2 record as v1')
    const e = expectOf()
    const sameSides = tampered(bytes, (r) => (r.b = { ...r.a, judged: r.b.judged }))
    await refused(
      checkCutRecordSignatures(sameSides, { ...e, jobs: { a: e.jobs.a, b: e.jobs.a } }),
      'one side twice',
    )
    for (const [what, expect_] of [
      ['another model', { ...e, model: other }],
      ['another input', { ...e, input: other }],
      ['another job for a', { ...e, jobs: { ...e.jobs, a: other } }],
      ['the jobs swapped', { ...e, jobs: { a: e.jobs.b, b: e.jobs.a } }],
    ] as const)
      await refused(checkCutRecordSignatures(bytes, expect_), what)
  })

  it('refuses a record whose job inputs are not the job’s, or whose sides differ before its leaf', async () => {
    // Leaf 0 reads the job's input: the record carries it, and both sides' cut -1 commit to it.
    const a = { trace: t.honest, key: keys[0]!, job: jobs.a }
    const b = { trace: await t.liar(0, 0.5), key: keys[1]!, job: jobs.b }
    const first = await recorded(t, EXACT, a, b)
    expect(Object.keys(first.record.jobInputs)).toEqual(['x'])
    await expect(verifyCutRecord(first.bytes, { plan: t.plan, run: ortRun })).resolves.toMatchObject({
      verdict: 'b-invalid',
      position: 0,
      proven: true,
    })
    const otherInput = (r: CutDisputeRecord) => (r.jobInputs.x!.data = flip(r.jobInputs.x!.data))
    await refused(verifyCutRecord(tampered(first.bytes, otherInput), { plan: t.plan }), 'job input changed')
    // b's cuts from a trace that lied one leaf earlier: each side judged on its own signed cuts, but
    // they differ before the leaf, which no search ends on.
    expect(producers(t.plan, LIAR)).toContain(LIAR - 1)
    const earlier = await t.liar(LIAR - 1, 0.5)
    const early = createCutCommitter({
      trace: earlier,
      plan: t.plan,
      rules: EXACT,
      key: keys[1]!,
      ...jobs.b,
    })
    const swap = async (d: CutDivergence) => {
      for (const at of ['lo', 'hi'] as const) {
        const signed = await early.commit(at === 'lo' ? LIAR - 1 : LIAR)
        d.cuts[at].b = cutOf(signed)
      }
    }
    const before = await recorded(
      t,
      EXACT,
      a,
      { trace: liar, sent: earlier, key: keys[1]!, job: jobs.b },
      swap,
    )
    expect(before.record.verdict).toBe('drift')
    await expect(checkCutRecordSignatures(before.bytes, expectOf())).resolves.toMatchObject({
      verdict: 'drift',
    })
    await refused(verifyCutRecord(before.bytes, { plan: t.plan }), 'sides differ before the leaf')
  })

  it('refuses cuts the plan does not name, or hi cuts that differ off the leaf’s outputs', async () => {
    const cp = cutPlan(t.plan)
    const reads = new Set(leafNode(t.plan, LIAR).inputs.map((i) => i.name))
    // Both sides' cut lo re-signed without a tensor the leaf does not read: signed, but not the plan's cut.
    const unread = cutAt(cp, LIAR - 1).find((n) => !reads.has(n))!
    const resigned = async (signed: Uint8Array, key: PrivateKey) => {
      const body = bodyOf(signed)
      const short = { ...body, tensors: body.tensors.filter((x) => x.name !== unread) }
      return dagCbor.encode({ body: short, sig: await signRecord(CUT_DOMAIN, short, key) })
    }
    const r = dagCbor.decode<CutDisputeRecord>(lied.bytes)
    r.a.lo = await resigned(r.a.lo, keys[0]!)
    r.b.lo = await resigned(r.b.lo, keys[1]!)
    const short = dagCbor.encode(r)
    await expect(checkCutRecordSignatures(short, expectOf())).resolves.toMatchObject({ verdict: 'b-invalid' })
    await refused(verifyCutRecord(short, { plan: t.plan }), 'a cut without a tensor')
    // b's cut hi changed on a tensor born before the leaf and live across it: the leaf's own outputs agree.
    const carried = cutAt(cp, LIAR).find((n) => cutAt(cp, LIAR - 1).includes(n))!
    const other = { ...t.honest, [carried]: shifted(0.5)(t.honest[carried]!) }
    const off = createCutCommitter({ trace: other, plan: t.plan, rules: EXACT, key: keys[1]!, ...jobs.b })
    const swap = async (d: CutDivergence) => {
      const signed = await off.commit(LIAR)
      d.cuts.hi.b = cutOf(signed)
    }
    const a = { trace: t.honest, key: keys[0]!, job: jobs.a }
    const offLeaf = await recorded(
      t,
      EXACT,
      a,
      { trace: liar, sent: t.honest, key: keys[1]!, job: jobs.b },
      swap,
    )
    expect([offLeaf.record.verdict, offLeaf.record.closer]).toEqual(['drift', undefined])
    await refused(verifyCutRecord(offLeaf.bytes, { plan: t.plan }), 'hi cuts differ off the leaf')
  })
})

describe('dispute records over cuts on mlp-tiny', () => {
  it('a closer forged by the record’s own referee outputs is not proven by a rerun', async () => {
    const t = await tracedJob('mlp-tiny.onnx', { x: floats([1, 16], 7) })
    const keys = [await generateIdentity(), await generateIdentity()]
    const jobB = { ...t.job, job: await modelCid(new TextEncoder().encode('replica b')) }
    const drifted = Object.fromEntries(
      Object.entries(t.honest).map(([k, v]) => [k, k in t.inputs ? v : shifted(1e-5)(v)]),
    )
    const a = { trace: t.honest, key: keys[0]!, job: t.job }
    const drift = await recorded(t, TIGHT, a, { trace: drifted, key: keys[1]!, job: jobB })
    expect([drift.record.verdict, drift.record.closer]).toEqual(['drift', 'a'])
    await expect(verifyCutRecord(drift.bytes, { plan: t.plan, run: ortRun })).resolves.toMatchObject({
      verdict: 'drift',
      proven: true,
    })
    // a's referee outputs (and hashes) moved off its claims by twice b's distance, within the
    // referee's tolerance: by the record, a is still ok, and b the closer side.
    const by = 2 * drift.settlement.b.distance!
    const claimed = claimedOutputs(t.plan, drift.record.leaf, bodyOf(drift.record.a.hi))
    const claims = Object.fromEntries(claimed.map((c) => [c.name, t.honest[c.name]!]))
    const moved = Object.fromEntries(claimed.map((c) => [c.name, shifted(by)(t.honest[c.name]!)]))
    const referee = await Promise.all(claimed.map((c) => exactHash(moved[c.name]!)))
    const forged = tampered(drift.bytes, (r) => {
      Object.assign(r.a, { referee, refereeOutputs: encodeTensors(moved), outputs: encodeTensors(claims) })
      r.closer = 'b'
    })
    await expect(verifyCutRecord(forged, { plan: t.plan })).resolves.toMatchObject({
      verdict: 'drift',
      proven: false,
    })
    // The rerun confirms both judgements, but puts a nearer: not proven (not invalid either).
    await expect(verifyCutRecord(forged, { plan: t.plan, run: ortRun })).resolves.toMatchObject({
      verdict: 'drift',
      proven: false,
      rerun: true,
    })
  })
})
