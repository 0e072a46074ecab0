/**
 * Cuts for a bisection over positions (src/dispute/cuts.ts): every cut equals the definition computed
 * by brute force, holds each leaf's computed inputs and live outputs and never the weights, and the
 * search ends at a leaf whose inputs agree and whose outputs differ, for any agreement pattern.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { mlpModelBytes } from '../../scripts/gen-models.ts'
import { type DisputePlan, disputePlan, leafNode } from '../../src/dispute/commit.ts'
import {
  advance,
  type CutPlan,
  cutAt,
  cutPlan,
  leafReads,
  nextProbe,
  searchRounds,
  startSearch,
} from '../../src/dispute/cuts.ts'
import { mulberry32 } from '../../src/shared/mlp.ts'
import { onnxModel } from '../helpers/onnx-graph.ts'

const publicDir = resolve(import.meta.dirname, '../../public')
const load = (file: string) => new Uint8Array(readFileSync(resolve(publicDir, file)))
const catalog = JSON.parse(readFileSync(resolve(publicDir, 'models/catalog.json'), 'utf8')) as {
  name: string
  file: string
  mlp?: unknown
}[]
const mlps = catalog.filter((e) => e.mlp).map((e) => [e.name, e.file] as const)
const det = disputePlan(load('models/vendor/ch_PP-OCRv4_det_infer.onnx'))
/** 12 hidden layers: MatMul, Add, Relu each, and a last MatMul, Add: 35 leaves. */
const deep = disputePlan(mlpModelBytes({ seed: 5, layers: Array.from({ length: 13 }, () => 8), batch: 1 }))

/** Cut positions of a plan of n leaves: -1 … n-1. */
const cutPositions = (n: number) => Array.from({ length: n + 1 }, (_, i) => i - 1)
const positions = (plan: DisputePlan) => cutPositions(plan.leaves.length)
const outputsOf = (plan: DisputePlan, q: number) => leafNode(plan, q).outputs.filter(Boolean)
const inputsOf = (plan: DisputePlan, q: number) => leafNode(plan, q).inputs

/** The cut at p straight from the definition, by scanning every leaf (quadratic, independent of cutPlan). */
function bruteCut(plan: DisputePlan, p: number): Set<string> {
  const m = plan.model
  const n = plan.leaves.length
  const bornBy = new Set(m.inputs)
  for (let q = 0; q <= p; q++) for (const o of outputsOf(plan, q)) bornBy.add(o)
  const needed = new Set(m.outputs)
  for (let q = p + 1; q < n; q++)
    for (const i of inputsOf(plan, q))
      if (i.source.kind === 'node' || i.source.kind === 'input') needed.add(i.name)
  return new Set([...bornBy].filter((name) => needed.has(name)))
}

/** Tensors that are the model: initializers and Constant nodes' outputs. */
const weightsOf = (plan: DisputePlan) =>
  new Set([
    ...plan.model.spans.initializers.keys(),
    ...plan.model.nodes.filter((x) => x.constant).flatMap((x) => x.outputs),
  ])

function checkCuts(plan: DisputePlan): CutPlan {
  const cp = cutPlan(plan)
  const n = plan.leaves.length
  expect(cp.size).toBe(n)
  const cuts = new Map(positions(plan).map((p) => [p, cutAt(cp, p)]))
  const birth = (name: string) => (plan.model.inputs.includes(name) ? -1 : plan.producer[name]!)
  for (const [p, cut] of cuts) {
    expect(new Set(cut), `cut ${p}`).toEqual(bruteCut(plan, p))
    expect(cut.length, `cut ${p} repeats a name`).toBe(new Set(cut).size)
    const order = [...cut].sort((a, b) => birth(a) - birth(b) || (a < b ? -1 : a > b ? 1 : 0))
    expect(cut, `cut ${p} order`).toEqual(order)
  }
  const weights = weightsOf(plan)
  for (const [p, cut] of cuts)
    expect(
      cut.filter((name) => weights.has(name)),
      `weights in cut ${p}`,
    ).toEqual([])
  for (let q = 0; q < n; q++) {
    const before = new Set(cuts.get(q - 1))
    const after = new Set(cuts.get(q))
    for (const i of inputsOf(plan, q)) {
      const computed = i.source.kind === 'node' || i.source.kind === 'input'
      expect(before.has(i.name), `leaf ${q} input '${i.name}' (${i.source.kind})`).toBe(computed)
    }
    expect(leafReads(plan, q).every((name) => before.has(name))).toBe(true)
    for (const o of outputsOf(plan, q)) {
      const readLater = Array.from({ length: n - q - 1 }, (_, k) => q + 1 + k).some((r) =>
        inputsOf(plan, r).some((i) => i.name === o),
      )
      expect(after.has(o), `leaf ${q} output '${o}'`).toBe(readLater || plan.model.outputs.includes(o))
      expect(before.has(o)).toBe(false)
    }
  }
  return cp
}

/** Drives the search round by round; `agree(p)` is the sides' verdict on cut p. */
function search(n: number, agree: (p: number) => boolean) {
  let s = startSearch(n)
  const asked: number[] = []
  for (let p = nextProbe(s.lo, s.hi); p !== undefined; p = nextProbe(s.lo, s.hi)) {
    expect(p).toBeGreaterThan(s.lo)
    expect(p).toBeLessThan(s.hi)
    asked.push(p)
    s = advance(s, agree(p))
  }
  expect(s.rounds).toBe(asked.length)
  return { ...s, asked }
}

describe('dispute cuts', () => {
  it.each(mlps)('a chain MLP (%s) has exactly one tensor in every cut', (_, file) => {
    const plan = disputePlan(load(file))
    const cp = checkCuts(plan)
    for (const p of positions(plan)) expect(cutAt(cp, p), `cut ${p}`).toHaveLength(1)
    expect(cutAt(cp, -1)).toEqual(['x'])
    expect(cutAt(cp, plan.leaves.length - 1)).toEqual(['y'])
  })

  it('a 35-leaf chain: one tensor per cut, the weights in none', () => {
    expect(deep.leaves).toHaveLength(35)
    const cp = checkCuts(deep)
    expect(positions(deep).map((p) => cutAt(cp, p).length)).toEqual(positions(deep).map(() => 1))
  })

  it.each(['silero_vad_v5.onnx', 'silero_vad_v5_seq.onnx', 'ch_PP-OCRv4_rec_infer.onnx'])(
    '%s: cuts hold what subgraphs read from outside (If, Loop) and match the definition',
    (file) => {
      const plan = disputePlan(load(`models/vendor/${file}`))
      checkCuts(plan)
      if (file.startsWith('silero'))
        expect(
          plan.model.nodes.some((x) => x.inputs.some((i) => i.implicit && i.source.kind === 'input')),
        ).toBe(true)
    },
  )

  it('PP-OCR det: small cuts, its Constant weights in none, long skips in every cut they span', () => {
    const m = det.model
    expect(m.nodes.filter((x) => x.constant).length).toBeGreaterThan(300)
    const cp = checkCuts(det)
    const n = det.leaves.length
    const sizes = positions(det).map((p) => cutAt(cp, p).length)
    // /tmp/pc/cuts measured 5 with its own liveness code.
    expect(Math.max(...sizes)).toBe(5)
    // The longest node-to-node edge, found by scanning the leaves.
    let skip = { name: '', from: 0, to: 0 }
    for (let q = 0; q < n; q++)
      for (const i of inputsOf(det, q))
        if (i.source.kind === 'node' && q - det.producer[i.name]! > skip.to - skip.from)
          skip = { name: i.name, from: det.producer[i.name]!, to: q }
    expect(skip.to - skip.from).toBeGreaterThan(100)
    expect(m.outputs).not.toContain(skip.name)
    for (const p of positions(det))
      expect(cutAt(cp, p).includes(skip.name), `cut ${p}`).toBe(skip.from <= p && p < skip.to)
  })

  it('keeps graph inputs that are outputs, drops dead outputs and refuses positions off the plan', () => {
    const v = (name: string) => ({ name, dtype: 'float32' as const, dims: [2] })
    const plan = disputePlan(
      onnxModel({
        name: 'edges',
        nodes: [
          { op: 'Constant', inputs: [], outputs: ['k'] },
          { op: 'Add', inputs: ['x', 'k'], outputs: ['a'] },
          { op: 'Split', inputs: ['a'], outputs: ['b', 'dead'] },
          { op: 'Mul', inputs: ['b', 'a'], outputs: ['y'] },
        ],
        inputs: [v('x'), v('z')],
        outputs: [v('y'), v('z'), v('a'), v('k')],
      }),
    )
    const cp = checkCuts(plan)
    expect(positions(plan).map((p) => cutAt(cp, p))).toEqual([
      ['x', 'z'],
      ['z', 'a'],
      ['z', 'a', 'b'],
      ['z', 'a', 'y'],
    ])
    for (const p of [-2, 3, 0.5, Number.NaN]) expect(() => cutAt(cp, p)).toThrow(/no cut/)
    expect(() => startSearch(0)).toThrow(/no search/)
    expect(() => nextProbe(2, 2)).toThrow(/no search/)
    expect(() => advance({ lo: 1, hi: 2, rounds: 3 }, true)).toThrow(/over/)
  })

  it.each([
    ['the 35-leaf chain', deep],
    ['PP-OCR det', det],
  ])('finds every liar position in %s within ceil(log2(N + 1)) rounds', (_, plan) => {
    const n = plan.leaves.length
    const bound = Math.ceil(Math.log2(n + 1))
    let most = 0
    for (let liar = 0; liar < n; liar++) {
      const s = search(n, (p) => p < liar)
      expect([s.lo, s.hi], `liar ${liar}`).toEqual([liar - 1, liar])
      expect(s.rounds).toBeLessThanOrEqual(bound)
      most = Math.max(most, s.rounds)
    }
    expect(most).toBe(searchRounds(n))
  })

  it('takes at most searchRounds(n) rounds, and that many for some liar, for every n up to 70', () => {
    for (let n = 1; n <= 70; n++) {
      const rounds = Array.from({ length: n }, (_, liar) => search(n, (p) => p < liar).rounds)
      expect(Math.max(...rounds), `n ${n}`).toBe(searchRounds(n))
    }
  })

  it('asks PP-OCR det the positions the spike measured (mid = floor((lo + hi) / 2))', () => {
    // /tmp/pc/cuts/report.md, liars at 10 % and 90 % of 330 leaves.
    expect(search(det.leaves.length, (p) => p < 33).asked).toEqual([164, 81, 40, 19, 29, 34, 31, 32, 33])
    expect(search(det.leaves.length, (p) => p < 297).asked).toEqual([
      164, 246, 287, 308, 297, 292, 294, 295, 296,
    ])
  })

  it('ends at adjacent positions, agreeing below and differing above, for any agreement pattern', () => {
    const r = mulberry32(11)
    for (const n of [1, 2, 3, 5, 35, 64, 65, det.leaves.length])
      for (let trial = 0; trial < 200; trial++) {
        const bias = r()
        const verdict = new Map(cutPositions(n).map((p) => [p, r() < bias]))
        verdict.set(-1, true).set(n - 1, false)
        const s = search(n, (p) => verdict.get(p)!)
        expect(s.hi).toBe(s.lo + 1)
        expect(verdict.get(s.lo)).toBe(true)
        expect(verdict.get(s.hi)).toBe(false)
        expect(s.rounds).toBeLessThanOrEqual(searchRounds(n))
      }
  })

  it('PP-OCR det: a lie about any one tensor, carried downstream, is traced to the leaf that made it', () => {
    const cp = cutPlan(det)
    const n = det.leaves.length
    let traced = 0
    for (let from = 0; from < n; from++)
      for (const lie of outputsOf(det, from)) {
        // The liar's trace: the lie and everything computed from it.
        const tainted = new Set([lie])
        for (let q = from + 1; q < n; q++)
          if (inputsOf(det, q).some((i) => tainted.has(i.name)))
            for (const o of outputsOf(det, q)) tainted.add(o)
        const agree = (p: number) => !cutAt(cp, p).some((name) => tainted.has(name))
        if (agree(n - 1)) continue // the lie never reaches an output
        expect(search(n, agree).hi, `lie about '${lie}'`).toBe(from)
        traced++
      }
    expect(traced).toBeGreaterThan(n / 2)
  })
})
