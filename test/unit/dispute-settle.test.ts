/**
 * Disputes settled end to end on PP-OCR detection (1x3x64x256, onnxruntime-node, graph optimisation
 * off so a trace and a node alone are bit-exact): a liar that perturbs one node and computes on from
 * there is found at that node and judged invalid; a liar whose tensors are unlike its commitments is
 * caught by the inputs check; honest drift (noise, onnxruntime-web vs -node) is 'drift'; records
 * verify and tampered ones do not.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import * as ort from 'onnxruntime-node'
import { beforeAll, describe, expect, it } from 'vitest'
import { bisect } from '../../src/dispute/bisect.ts'
import {
  commitTrace,
  type DisputePlan,
  type DisputeRules,
  disputePlan,
  disputeRules,
  exactHash,
  leafNode,
  leafOutputs,
  producers,
} from '../../src/dispute/commit.ts'
import { withIntermediateOutputs } from '../../src/dispute/onnx-graph.ts'
import { localParty, type Meter, metered } from '../../src/dispute/party.ts'
import {
  buildDisputeRecord,
  type DisputeRecord,
  encodeDisputeRecord,
  verifyDisputeRecord,
} from '../../src/dispute/record.ts'
import { referee } from '../../src/dispute/referee.ts'
import { modelCid } from '../../src/shared/cid.ts'
import { type NamedTensors, tensorsByteLength } from '../../src/shared/tensor.ts'
import { encodeTensors } from '../../src/shared/tensor-codec.ts'
import { lyingTrace, shifted } from '../helpers/liar-trace.ts'
import { floats, type Runtime, runOn } from '../helpers/ort-run.ts'

const publicDir = resolve(import.meta.dirname, '../../public/models')
const det = new Uint8Array(readFileSync(resolve(publicDir, 'vendor/ch_PP-OCRv4_det_infer.onnx')))

const run = (bytes: Uint8Array, inputs: NamedTensors) => runOn(ort, bytes, inputs)

interface Outcome {
  position: number
  rounds: number
  refereeRounds: number
  bytes: number
  tensorBytes: number
  byQuestion: Meter['byQuestion']
  ms: number
  verdict: string
  record: DisputeRecord
  settlement: Awaited<ReturnType<typeof referee>>
}

/** Commits both traces, bisects, referees and records; counts what the parties sent. */
async function dispute(
  plan: DisputePlan,
  rules: DisputeRules,
  jobInputs: NamedTensors,
  sides: { a: [NamedTensors, NamedTensors?]; b: [NamedTensors, NamedTensors?] },
): Promise<Outcome> {
  const meter: Meter = { answers: 0, bytes: 0, tensorBytes: 0 }
  const party = async ([sent, committed]: [NamedTensors, NamedTensors?]) =>
    metered(localParty(plan, await commitTrace(plan, rules, committed ?? sent), sent), meter)
  const a = await party(sides.a)
  const b = await party(sides.b)
  const t0 = performance.now()
  const divergence = await bisect({ plan, rules, a, b })
  const settlement = await referee({ plan, rules, divergence, a, b, jobInputs, run })
  const ms = performance.now() - t0
  const record = await buildDisputeRecord({
    model: await modelCid(plan.model.bytes),
    plan,
    rules,
    divergence,
    settlement,
  })
  return {
    position: divergence.position,
    rounds: divergence.rounds,
    refereeRounds: settlement.rounds,
    bytes: meter.bytes,
    tensorBytes: meter.tensorBytes,
    byQuestion: meter.byQuestion,
    ms,
    verdict: settlement.verdict,
    record,
    settlement,
  }
}

describe('dispute settlement on PP-OCR detection', () => {
  const plan = disputePlan(det)
  const n = plan.leaves.length
  const jobInputs: NamedTensors = { x: floats([1, 3, 64, 256], 4) }
  const exact = disputeRules({ kind: 'exact' })
  let honest: NamedTensors
  let cid: string
  /** What a third replica moves: the job's input and output. */
  let replicaBytes: number
  const report = (what: string, o: Outcome) =>
    console.log(
      `${what}: N=${n} leaf=${o.position} rounds=${o.rounds}+${o.refereeRounds} (log2 N=${Math.log2(n).toFixed(1)})` +
        ` bytes=${o.bytes} (tensors ${o.tensorBytes}) vs third replica ${replicaBytes} ms=${o.ms.toFixed(0)} → ${o.verdict}` +
        ` ${JSON.stringify(o.byQuestion)}`,
    )

  beforeAll(async () => {
    honest = await run(withIntermediateOutputs(plan.model), jobInputs)
    cid = (await modelCid(det)).toString()
    replicaBytes = tensorsByteLength(jobInputs) + tensorsByteLength({ y: honest[plan.model.outputs[0]!]! })
    console.log(`PP-OCR det trace: ${n} leaves, ${tensorsByteLength(honest)} bytes of tensors`)
  })

  it.each([0, 150, 329])('finds a liar at leaf %i (exact) and the referee marks it invalid', async (k) => {
    const liar = await lyingTrace(plan, honest, jobInputs, k, shifted(0.5))
    const o = await dispute(plan, exact, jobInputs, { a: [honest], b: [liar] })
    report('exact, liar b', o)
    expect(o.position).toBe(k)
    expect(o.rounds).toBeLessThanOrEqual(Math.ceil(Math.log2(n)) + 2)
    expect(o.verdict).toBe('b-invalid')
    expect(o.settlement.b.judged).toBe('wrong-output')
    const check = await verifyDisputeRecord(encodeDisputeRecord(o.record), { plan, model: cid, run })
    expect(check).toMatchObject({ verdict: 'b-invalid', position: k, proven: true, rerun: true })
  })

  it('finds a liar under the OCR detection tolerance', async () => {
    const rules = disputeRules({ kind: 'tolerance', atol: 1e-3, rtol: 0 })
    const liar = await lyingTrace(plan, honest, jobInputs, 200, shifted(0.5))
    const o = await dispute(plan, rules, jobInputs, { a: [liar], b: [honest] })
    report('tolerance, liar a', o)
    expect(o.position).toBe(200)
    // one round more than under exact: the differing chunks follow their hashes
    expect(o.rounds).toBeLessThanOrEqual(Math.ceil(Math.log2(n)) + 3)
    expect(o.verdict).toBe('a-invalid')
    await expect(verifyDisputeRecord(encodeDisputeRecord(o.record), { plan, run })).resolves.toMatchObject({
      verdict: 'a-invalid',
      proven: true,
    })
  })

  it('catches a side whose input tensors are unlike its commitments', async () => {
    // a computed on a changed leaf 120 but committed to the honest 120: its first differing leaf is
    // 120's first consumer, whose inputs both sides "agree" on; a's tensors give it away.
    const lie = await lyingTrace(plan, honest, jobInputs, 120, shifted(0.5))
    const claimed = { ...lie }
    for (const name of leafOutputs(leafNode(plan, 120))) claimed[name] = honest[name]!
    const o = await dispute(plan, exact, jobInputs, { a: [lie, claimed], b: [honest] })
    report('exact, a lies in its commitments', o)
    expect(producers(plan, o.position)).toContain(120)
    expect(o.verdict).toBe('a-invalid')
    expect(o.settlement.a.judged).toBe('bad-commitment')
    expect(o.settlement.b.judged).toBe('ok')
    const check = await verifyDisputeRecord(encodeDisputeRecord(o.record), { plan, run })
    expect(check).toMatchObject({ verdict: 'a-invalid', proven: false })
  })

  it('calls 1e-7 noise on every tensor drift under a tight job tolerance', async () => {
    const rules = disputeRules({ kind: 'tolerance', atol: 1e-9, rtol: 0 })
    let s = 9
    const noisy: NamedTensors = {}
    for (const [name, t] of Object.entries(honest)) {
      noisy[name] =
        t.dtype === 'float32'
          ? {
              ...t,
              data: (t.data as Float32Array).map((v) => {
                s = (s * 1103515245 + 12345) % 2 ** 31
                return v + (s / 2 ** 30 - 1) * 1e-7
              }),
            }
          : t
    }
    const o = await dispute(plan, rules, jobInputs, { a: [honest], b: [noisy] })
    report('noise 1e-7, tolerance', o)
    expect(o.verdict).toBe('drift')
    expect(o.settlement.closer).toBe('a')
    await expect(verifyDisputeRecord(encodeDisputeRecord(o.record), { plan })).resolves.toMatchObject({
      verdict: 'drift',
      proven: false, // on the recorder's word until recomputed
    })
    await expect(verifyDisputeRecord(encodeDisputeRecord(o.record), { plan, run })).resolves.toMatchObject({
      verdict: 'drift',
      proven: true,
    })
    const bytes = encodeDisputeRecord(o.record)
    const changed = (change: (r: DisputeRecord) => void) => {
      const r = dagCbor.decode(bytes) as DisputeRecord
      change(r)
      return encodeDisputeRecord(r)
    }
    for (const closer of ['b', undefined] as const)
      await expect(
        verifyDisputeRecord(
          changed((r) => (r.closer = closer)),
          { plan },
        ),
        `closer ${closer}`,
      ).rejects.toMatchObject({ name: 'InvalidDisputeRecordError' })
    // a's referee outputs (and hashes) moved off its claims by more than b's distance, within the
    // referee's tolerance: by the record, a is still ok, and b the closer side.
    const by = 2 * o.settlement.b.distance! + 1e-5
    const claimed = o.record.a.leaf.leaf.outputs
    const claims = Object.fromEntries(claimed.map((c) => [c.name, honest[c.name]!]))
    const moved = Object.fromEntries(claimed.map((c) => [c.name, shifted(by)(honest[c.name]!)]))
    const referee = await Promise.all(claimed.map((c) => exactHash(moved[c.name]!)))
    const forged = changed((r) => {
      Object.assign(r.a, { referee, refereeOutputs: encodeTensors(moved), outputs: encodeTensors(claims) })
      r.closer = 'b'
    })
    await expect(verifyDisputeRecord(forged, { plan })).resolves.toMatchObject({ proven: false })
    // The rerun confirms both judgements, but puts a nearer: not proven (not invalid either).
    await expect(verifyDisputeRecord(forged, { plan, run })).resolves.toMatchObject({
      verdict: 'drift',
      proven: false,
      rerun: true,
    })
  })

  it('calls onnxruntime-web (WASM) vs onnxruntime-node drift', async () => {
    const web = (await import('onnxruntime-web')) as unknown as Runtime & {
      env: { wasm: { numThreads: number } }
    }
    web.env.wasm.numThreads = 1
    const wasmTrace = await runOn(web, withIntermediateOutputs(plan.model), jobInputs)
    const out = plan.model.outputs[0]!
    const diff = Math.max(
      ...Array.from(wasmTrace[out]!.data as Float32Array, (v, i) =>
        Math.abs(v - (honest[out]!.data[i] as number)),
      ),
    )
    expect(diff).toBeGreaterThan(0) // ulps apart: a job asking for 1e-9 disputes it
    const rules = disputeRules({ kind: 'tolerance', atol: 1e-9, rtol: 0 })
    const o = await dispute(plan, rules, jobInputs, { a: [honest], b: [wasmTrace] })
    report(`web vs node (final diff ${diff.toExponential(1)})`, o)
    expect(o.verdict).toBe('drift')
    const record = encodeDisputeRecord(o.record)
    await expect(verifyDisputeRecord(record, { plan, run })).resolves.toMatchObject({ proven: true })
    console.log(`web vs node dispute record: ${record.byteLength} bytes`)
  })

  it('rejects tampered dispute records', async () => {
    const liar = await lyingTrace(plan, honest, jobInputs, 150, shifted(0.5))
    const { record } = await dispute(plan, exact, jobInputs, { a: [honest], b: [liar] })
    const bytes = encodeDisputeRecord(record)
    await expect(verifyDisputeRecord(bytes, { plan, model: cid })).resolves.toMatchObject({
      verdict: 'b-invalid',
    })
    const flip = (h: Uint8Array) => Uint8Array.from(h, (x, i) => (i ? x : x ^ 1))
    const tampered: [string, (r: DisputeRecord) => void][] = [
      ['verdict', (r) => (r.verdict = 'a-invalid')],
      ['closer under b-invalid', (r) => (r.closer = 'a')],
      ['judgement', (r) => (r.b.judged = 'ok')],
      ['position', (r) => (r.position = 149)],
      ['node', (r) => (r.node.index += 1)],
      ['root', (r) => (r.a.commitment.root = flip(r.a.commitment.root))],
      ['proof', (r) => (r.b.leaf.exactPath[2] = flip(r.b.leaf.exactPath[2]!))],
      ['producer', (r) => (r.a.producers[0]!.coarsePath[0] = flip(r.a.producers[0]!.coarsePath[0]!))],
      ['output hash', (r) => (r.b.leaf.leaf.outputs[0]!.exact = flip(r.b.leaf.leaf.outputs[0]!.exact))],
      ['referee hash', (r) => (r.b.referee![0] = r.b.leaf.leaf.outputs[0]!.exact)],
      ['evidence', (r) => (r.a.inputs = r.b.refereeOutputs)],
      ['same sides', (r) => (r.b = r.a)],
    ]
    for (const [what, change] of tampered) {
      const r = dagCbor.decode(bytes) as DisputeRecord
      change(r)
      await expect(verifyDisputeRecord(encodeDisputeRecord(r), { plan }), what).rejects.toMatchObject({
        name: 'InvalidDisputeRecordError',
      })
    }
    await expect(verifyDisputeRecord(bytes, { plan, model: 'bafkreiother' })).rejects.toThrow(/about model/)
  })
})
