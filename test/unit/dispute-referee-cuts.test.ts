/**
 * The referee over cuts (src/dispute/referee-cuts.ts) after bisectCuts, between cut committers over
 * real onnxruntime-node traces of mlp-tiny and PP-OCR detection: a liar is convicted at the leaf it
 * changed; a liar whose tensors are not the ones its cuts commit to is caught by them; honest drift is
 * 'drift'; a transport failure is blamed on its side.
 */
import type { PrivateKey } from '@libp2p/interface'
import { beforeAll, describe, expect, it } from 'vitest'
import { bisectCuts, type CutDivergence, type CutParty } from '../../src/dispute/bisect-cuts.ts'
import {
  type DisputeRules,
  disputeRules,
  leafNode,
  leafOutputs,
  producers,
} from '../../src/dispute/commit.ts'
import { createCutCommitter } from '../../src/dispute/cut-commit.ts'
import { withIntermediateOutputs } from '../../src/dispute/onnx-graph.ts'
import { PREFETCH_BYTES, type RefereeCutsOptions, refereeCuts } from '../../src/dispute/referee-cuts.ts'
import type { NamedTensors, Tensor } from '../../src/shared/tensor.ts'
import { generateIdentity, peerIdOf } from '../../src/trust/keys.ts'
import { tracedJob } from '../helpers/cut-trace.ts'
import { lyingTrace, shifted } from '../helpers/liar-trace.ts'
import { floats, ortRun, type Runtime, runOn } from '../helpers/ort-run.ts'

const EXACT = disputeRules({ kind: 'exact' })
type Traced = Awaited<ReturnType<typeof tracedJob>>

/** A contributor committing cuts of `trace` whose tensor() answers from `sent` (default: the trace), counting them. */
function side(t: Traced, rules: DisputeRules, trace: NamedTensors, key: PrivateKey, sent = trace) {
  const committer = createCutCommitter({ trace, plan: t.plan, rules, key, ...t.job })
  const asked: string[] = []
  const party: CutParty = {
    cut: (p) => committer.commit(p),
    chunkHashes: (name) => committer.chunkHashes(name),
    chunks: (name, indices) => committer.chunks(name, indices),
    async tensor(name) {
      asked.push(name)
      await committer.tensor(name) // only names live across a cut, as the committer answers
      return sent[name]!
    },
  }
  return { party, asked, worker: peerIdOf(key) }
}
type Side = ReturnType<typeof side>

/** bisectCuts, then refereeCuts on what it found. */
async function dispute(
  t: Traced,
  rules: DisputeRules,
  a: Side,
  b: Side,
  more: Partial<RefereeCutsOptions> = {},
  edit: (d: CutDivergence) => CutDivergence = (d) => d,
) {
  const found = await bisectCuts({
    plan: t.plan,
    rules,
    a: a.party,
    b: b.party,
    workers: { a: a.worker, b: b.worker },
    job: t.job,
    inputs: t.inputs,
  })
  const divergence = edit(found)
  const asked = [a.asked.length, b.asked.length]
  const s = await refereeCuts({
    plan: t.plan,
    rules,
    divergence,
    a: a.party,
    b: b.party,
    jobInputs: t.inputs,
    run: ortRun,
    ...more,
  })
  return { d: divergence, s, fetched: { a: a.asked.length - asked[0]!, b: b.asked.length - asked[1]! } }
}

describe('refereeCuts on mlp-tiny (exact)', () => {
  let t: Traced
  let keys: PrivateKey[]
  beforeAll(async () => {
    t = await tracedJob('mlp-tiny.onnx', { x: floats([1, 16], 7) })
    keys = [await generateIdentity(), await generateIdentity()]
  })

  it('convicts a liar at every leaf on one run of the node, b sharing a’s inputs', async () => {
    for (let at = 0; at < t.plan.leaves.length; at++) {
      const a = side(t, EXACT, t.honest, keys[0]!)
      const b = side(t, EXACT, await t.liar(at, 0.5), keys[1]!)
      const { d, s, fetched } = await dispute(t, EXACT, a, b)
      expect([d.leaf, d.node, s.verdict, s.a.judged, s.b.judged]).toEqual([
        at,
        t.plan.leaves[at],
        'b-invalid',
        'ok',
        'wrong-output',
      ])
      const reads = producers(t.plan, at).length > 0
      expect([s.refereeRuns, s.rounds, fetched.b, fetched.a > 0]).toEqual([1, reads ? 1 : 0, 0, reads])
      expect(s.a.referee).toEqual(s.b.referee)
      expect(Object.keys(s.jobInputs)).toEqual(at === 0 ? ['x'] : [])
    }
  })

  it('asks b for its own inputs where a’s are not a’s, and blames a transport failure on its side', async () => {
    const at = 2
    const liar = await t.liar(at, 0.5)
    const [name] = leafOutputs(leafNode(t.plan, at - 1))
    const h = t.honest[name!]!
    const malformed: Tensor = { ...h, data: h.data.subarray(1) }
    const a = side(t, EXACT, t.honest, keys[0]!, { ...t.honest, [name!]: malformed })
    const b = side(t, EXACT, liar, keys[1]!)
    const { s, fetched } = await dispute(t, EXACT, a, b)
    expect([s.verdict, s.a.judged, s.b.judged, s.rounds, fetched.b]).toEqual([
      'both-invalid',
      'bad-answer',
      'wrong-output',
      2,
      1,
    ])
    expect(s.a.reason).toMatch(/DisputeAnswerError/)
    const broken = side(t, EXACT, t.honest, keys[0]!)
    broken.party.tensor = () => Promise.reject(new Error('link reset'))
    const err = await dispute(t, EXACT, broken, side(t, EXACT, liar, keys[1]!)).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'Error', message: 'link reset', party: 'a' })
    const aborted = dispute(t, EXACT, a, b, { signal: AbortSignal.abort() })
    await expect(aborted).rejects.toMatchObject({ name: 'AbortError' })
  })
})

describe('refereeCuts on PP-OCR detection (1x3x64x256)', () => {
  const LIAR = 150
  let t: Traced
  let keys: PrivateKey[]
  beforeAll(async () => {
    t = await tracedJob('vendor/ch_PP-OCRv4_det_infer.onnx', { x: floats([1, 3, 64, 256], 4) })
    keys = [await generateIdentity(), await generateIdentity()]
  })

  it('exact: convicts a liar at the leaf it changed', async () => {
    const a = side(t, EXACT, t.honest, keys[0]!)
    const b = side(t, EXACT, await t.liar(LIAR, 0.5), keys[1]!)
    const { d, s, fetched } = await dispute(t, EXACT, a, b)
    expect([d.leaf, d.node, s.verdict, s.a.judged, s.b.judged]).toEqual([
      LIAR,
      t.plan.leaves[LIAR],
      'b-invalid',
      'ok',
      'wrong-output',
    ])
    expect([s.refereeRuns, s.rounds, fetched.b]).toEqual([1, 1, 0])
    console.log(`det exact, liar at ${LIAR}: ${d.probes} probes, ${d.rounds}+${s.rounds} rounds`)
  })

  it('tolerance: convicts a liar past its outputs, compared by value', async () => {
    const rules = disputeRules({ kind: 'tolerance', atol: 1e-3, rtol: 1e-2 })
    const a = side(t, rules, await t.liar(LIAR, 100), keys[0]!)
    const b = side(t, rules, t.honest, keys[1]!)
    const { d, s, fetched } = await dispute(t, rules, a, b)
    expect([d.leaf, s.verdict, s.a.judged, s.b.judged, s.rounds]).toEqual([
      LIAR,
      'a-invalid',
      'wrong-output',
      'ok',
      1,
    ])
    const outs = leafOutputs(leafNode(t.plan, LIAR))
    expect(Object.keys(s.a.outputs ?? {})).toEqual(outs)
    expect(s.a.distance).toBeGreaterThan(99)
    // Both sides' outputs come with the inputs, in one round: b's too, though they match exactly.
    expect([s.b.distance, fetched.b]).toEqual([0, outs.length])
    // Each side is sized by its own hashes: over PREFETCH_BYTES, b is not asked in round one, and
    // matching the referee exactly it is not asked at all; a liar can misstate only its own sizes.
    const big = (x: Record<string, number>) =>
      Object.fromEntries(Object.keys(x).map((k) => [k, PREFETCH_BYTES + 1]))
    const sized = await dispute(t, rules, a, b, {}, (d) => ({
      ...d,
      hiBytes: { a: d.hiBytes!.a, b: big(d.hiBytes!.b) },
    }))
    expect([sized.s.verdict, sized.s.rounds, sized.fetched.b, sized.fetched.a > 0]).toEqual([
      'a-invalid',
      1,
      0,
      true,
    ])
    // Its claimed outputs sent are not the ones its cut at the leaf commits to.
    const other = side(t, rules, await t.liar(LIAR, 100), keys[0]!, t.honest)
    const swapped = await dispute(t, rules, other, b)
    expect([swapped.s.verdict, swapped.s.a.judged]).toEqual(['a-invalid', 'bad-commitment'])
    expect(swapped.s.a.reason).toMatch(/^output '.*' is not the tensor it committed to/)
  })

  it('catches a side whose tensors are not the ones its cuts commit to', async () => {
    // a computed on a changed leaf 120 but its cuts commit to the honest 120: the first leaf whose
    // outputs differ reads 120's outputs, which both sides' cuts agree on; a's tensors give it away.
    const lie = { ...t.inputs, ...(await lyingTrace(t.plan, t.honest, t.inputs, 120, shifted(0.5))) }
    const claimed = { ...lie }
    for (const name of leafOutputs(leafNode(t.plan, 120))) claimed[name] = t.honest[name]!
    const a = side(t, EXACT, claimed, keys[0]!, lie)
    const b = side(t, EXACT, t.honest, keys[1]!)
    const { d, s, fetched } = await dispute(t, EXACT, a, b)
    expect(producers(t.plan, d.leaf)).toContain(120)
    expect([s.verdict, s.a.judged, s.b.judged, s.rounds, s.refereeRuns]).toEqual([
      'a-invalid',
      'bad-commitment',
      'ok',
      2,
      1,
    ])
    expect(s.a.reason).toMatch(/is not the tensor it committed to/)
    expect(fetched.b).toBe(fetched.a) // a's copies were not a's own: b sent its own
  })

  it('calls 1e-5 noise on every tensor drift under a tight job tolerance, the nearer side closer', async () => {
    const rules = disputeRules({ kind: 'tolerance', atol: 1e-9, rtol: 0 })
    const drifted = Object.fromEntries(
      Object.entries(t.honest).map(([k, v]) => [k, k in t.inputs ? v : shifted(1e-5)(v)]),
    )
    const a = side(t, rules, t.honest, keys[0]!)
    const b = side(t, rules, drifted, keys[1]!)
    const { d, s } = await dispute(t, rules, a, b)
    expect(leafOutputs(leafNode(t.plan, d.leaf)).some((n) => t.plan.model.outputs.includes(n))).toBe(true)
    expect([s.verdict, s.a.judged, s.b.judged, s.closer, s.refereeRuns]).toEqual([
      'drift',
      'ok',
      'ok',
      'a',
      2,
    ])
    expect(s.b.distance).toBeGreaterThan(0)
    // Under the job's own rule the drifted side would be wrong: the referee allows the measured kernel drift.
    const strict = await dispute(t, rules, a, b, { compare: { kind: 'tolerance', atol: 1e-12, rtol: 0 } })
    expect([strict.s.verdict, strict.s.compare?.kind]).toEqual(['b-invalid', 'tolerance'])
  })

  it('calls onnxruntime-web (WASM) against onnxruntime-node drift, no one punished', async () => {
    const web = (await import('onnxruntime-web')) as unknown as Runtime & {
      env: { wasm: { numThreads: number } }
    }
    web.env.wasm.numThreads = 1
    const wasm = { ...t.inputs, ...(await runOn(web, withIntermediateOutputs(t.plan.model), t.inputs)) }
    const out = t.plan.model.outputs[0]!
    const apart = (wasm[out]!.data as Float32Array).some((v, i) => v !== t.honest[out]!.data[i])
    expect(apart).toBe(true) // ulps apart: a job asking for 1e-9 disputes it
    const rules = disputeRules({ kind: 'tolerance', atol: 1e-9, rtol: 0 })
    const { d, s } = await dispute(
      t,
      rules,
      side(t, rules, t.honest, keys[0]!),
      side(t, rules, wasm, keys[1]!),
    )
    expect([s.verdict, s.a.judged, s.b.judged]).toEqual(['drift', 'ok', 'ok'])
    console.log(
      `web vs node over cuts: leaf ${d.leaf}, ${d.probes} probes, ${d.straddles} straddles, ${d.rounds} rounds`,
    )
  })
})
