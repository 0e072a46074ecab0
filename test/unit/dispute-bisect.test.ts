/**
 * Bisection (src/dispute/bisect.ts): rounds stay within ceil(log2 N) + 2 from N = 1 to 4096 and for the
 * MLPs end to end; every answer that does not hash to its party's commitment blames that party.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { bisect } from '../../src/dispute/bisect.ts'
import {
  commitTrace,
  type DisputePlan,
  disputePlan,
  disputeRules,
  leafNode,
  leafOutputs,
} from '../../src/dispute/commit.ts'
import { singleNodeModel, withIntermediateOutputs } from '../../src/dispute/onnx-graph.ts'
import { type DisputeParty, localParty } from '../../src/dispute/party.ts'
import { referee } from '../../src/dispute/referee.ts'
import type { NamedTensors, Tensor } from '../../src/shared/tensor.ts'
import { onnxModel } from '../helpers/onnx-graph.ts'
import { ortRun } from '../helpers/ort-run.ts'

const run = (bytes: Uint8Array, inputs: NamedTensors) => ortRun(bytes, inputs)
const vec = (xs: number[]): Tensor => ({ dtype: 'float32', dims: [xs.length], data: Float32Array.from(xs) })
const exact = disputeRules({ kind: 'exact' })
const bound = (n: number) => Math.ceil(Math.log2(n)) + 2

/** A chain of `n` Neg nodes: x → h1 → … → y. Bisection needs only its plan, not a runtime. */
const chain = (n: number) =>
  disputePlan(
    onnxModel({
      name: 'chain',
      nodes: Array.from({ length: n }, (_, i) => ({
        op: 'Neg',
        inputs: [i ? `h${i}` : 'x'],
        outputs: [i === n - 1 ? 'y' : `h${i + 1}`],
      })),
      inputs: [{ name: 'x', dtype: 'float32', dims: [4] }],
      outputs: [{ name: 'y', dtype: 'float32', dims: [4] }],
    }),
  )

/** A trace of the chain where every value from leaf `from` on is off by `by`. */
function chainTrace(plan: DisputePlan, from = Number.POSITIVE_INFINITY, by = 1): NamedTensors {
  const out: NamedTensors = {}
  for (let p = 0; p < plan.leaves.length; p++) {
    for (const name of leafOutputs(leafNode(plan, p)))
      out[name] = vec([p, p + 1, p + 2, p >= from ? p + by : p])
  }
  return out
}

const parties = async (plan: DisputePlan, ta: NamedTensors, tb: NamedTensors) => ({
  a: localParty(plan, await commitTrace(plan, exact, ta), ta),
  b: localParty(plan, await commitTrace(plan, exact, tb), tb),
})

describe('dispute bisection', () => {
  it.each([2, 3, 5, 330, 1000, 4096])(
    'finds the first differing of %i leaves within ceil(log2 N) + 2 rounds',
    async (n) => {
      const plan = chain(n)
      const rounds: string[] = []
      for (const k of [...new Set([0, Math.floor(n / 3), n - 1])]) {
        const { a, b } = await parties(plan, chainTrace(plan), chainTrace(plan, k))
        const d = await bisect({ plan, rules: exact, a, b })
        expect(d.position).toBe(k)
        expect(d.rounds).toBeLessThanOrEqual(bound(n))
        rounds.push(`leaf ${k}: ${d.rounds}`)
      }
      console.log(`N=${n} (bound ${bound(n)}): rounds ${rounds.join(', ')}`)
    },
  )

  it('settles a single-leaf model', async () => {
    const plan = chain(1)
    const { a, b } = await parties(plan, chainTrace(plan), chainTrace(plan, 0))
    const d = await bisect({ plan, rules: exact, a, b })
    expect([d.position, d.rounds]).toEqual([0, 2])
  })

  it.each(['mlp-tiny', 'mlp-s'])('settles %s end to end: every liar found and judged', async (name) => {
    const bytes = new Uint8Array(
      readFileSync(resolve(import.meta.dirname, `../../public/models/${name}.onnx`)),
    )
    const plan = disputePlan(bytes)
    const dims = name === 'mlp-s' ? [64, 256] : [1, 16]
    const x: Tensor = {
      dtype: 'float32',
      dims,
      data: new Float32Array(dims[0]! * dims[1]!).map((_, i) => Math.sin(i)),
    }
    const honest = await run(withIntermediateOutputs(plan.model), { x })
    const n = plan.leaves.length
    expect(n).toBe(5)
    for (let k = 0; k < n; k++) {
      // the liar doubles leaf k and computes on from there
      const liar: NamedTensors = { ...honest }
      for (let p = k; p < n; p++) {
        const node = leafNode(plan, p)
        if (p === k) {
          for (const o of leafOutputs(node))
            liar[o] = { ...honest[o]!, data: (honest[o]!.data as Float32Array).map((v) => 2 * v + 1) }
          continue
        }
        const feeds: NamedTensors = {}
        for (const i of node.inputs)
          if (i.source.kind !== 'initializer') feeds[i.name] = i.source.kind === 'input' ? x : liar[i.name]!
        const specs = Object.entries(feeds).map(([k, t]) => ({ name: k, dtype: t.dtype, dims: t.dims }))
        Object.assign(liar, await run(singleNodeModel(plan.model, node.index, specs), feeds))
      }
      const { a, b } = await parties(plan, liar, honest)
      const d = await bisect({ plan, rules: exact, a, b })
      expect(d.position).toBe(k)
      expect(d.rounds).toBeLessThanOrEqual(bound(n))
      const s = await referee({ plan, rules: exact, divergence: d, a, b, jobInputs: { x }, run })
      expect(s.verdict).toBe('a-invalid')
    }
  })

  describe('blames a party whose answers do not hold', () => {
    const plan = chain(40)
    const flip = (h: Uint8Array) => Uint8Array.from(h, (x, i) => (i ? x : x ^ 1))
    const setup = async (bend: (p: DisputeParty) => Partial<DisputeParty>, bendA = false) => {
      const { a, b } = await parties(plan, chainTrace(plan), chainTrace(plan, 17))
      return bendA ? { a: { ...a, ...bend(a) }, b: { ...b, ...bend(b) } } : { a, b: { ...b, ...bend(b) } }
    }
    const caught = (name: string, party: string) => expect.objectContaining({ name, party })

    it('children that do not hash to their node', async () => {
      const { a, b } = await setup((p) => ({
        children: async (f, t) => (await p.children(f, t)).map(flip) as never,
      }))
      await expect(bisect({ plan, rules: exact, a, b })).rejects.toEqual(caught('DisputeProofError', 'b'))
    })

    it('a leaf unlike its proof, on both sides', async () => {
      const bend = (p: DisputeParty): Partial<DisputeParty> => ({
        leaf: async (i) => {
          const ans = await p.leaf(i)
          const outputs = ans.leaf.outputs.map((o) => ({ ...o, exact: flip(o.exact) }))
          return { ...ans, leaf: { ...ans.leaf, outputs } }
        },
      })
      const { a, b } = await setup(bend, true)
      await expect(bisect({ plan, rules: exact, a, b })).rejects.toEqual(caught('DisputeProofError', 'both'))
    })

    it('malformed answers, a commitment it did not sign, equal commitments', async () => {
      const bad = await setup(() => ({ children: async () => [new Uint8Array(32)] as never }))
      await expect(bisect({ plan, rules: exact, ...bad })).rejects.toEqual(caught('DisputeAnswerError', 'b'))
      const { a, b } = await setup(() => ({}))
      const roots = { a: new Uint8Array(32) }
      await expect(bisect({ plan, rules: exact, a, b, roots })).rejects.toEqual(
        caught('DisputeProofError', 'a'),
      )
      await expect(bisect({ plan, rules: exact, a, b: a })).rejects.toMatchObject({
        name: 'NoDivergenceError',
      })
    })
  })
})
