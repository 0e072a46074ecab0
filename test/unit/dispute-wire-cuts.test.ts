/**
 * Disputes over cuts on the wire (src/dispute/wire-cuts.ts, serve-cuts.ts): bisectCuts through two
 * remoteCutParty()s against real servers finds the liar's leaf as it does in process; whole tensors
 * come back as committed. Malformed questions and answers: dispute-wire-cuts-refusals.test.ts.
 */
import type { PrivateKey } from '@libp2p/interface'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type BisectCutsOptions, bisectCuts } from '../../src/dispute/bisect-cuts.ts'
import { disputeRules, exactHash } from '../../src/dispute/commit.ts'
import { createCutCommitter } from '../../src/dispute/cut-commit.ts'
import { leafReads } from '../../src/dispute/cuts.ts'
import type { RemoteCutParty } from '../../src/dispute/wire-cuts.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { peerIdOf } from '../../src/trust/keys.ts'
import type { CompareRule } from '../../src/trust/policy.ts'
import { tracedJob } from '../helpers/cut-trace.ts'
import { floats } from '../helpers/ort-run.ts'
import {
  type Contributor,
  closeStreams,
  connect,
  contributor,
  EXACT,
  search,
  TOLERANCE,
  type Traced,
} from '../helpers/wire-cuts.ts'

afterEach(closeStreams)

/** The same search in process, over cut committers with the same keys. */
async function local(t: Traced, compare: CompareRule, traces: NamedTensors[], keys: PrivateKey[]) {
  const rules = disputeRules(compare)
  const [a, b] = traces.map((trace, k) =>
    createCutCommitter({ trace, plan: t.plan, rules, key: keys[k]!, ...t.job }),
  )
  const party = (c: typeof a) => ({
    cut: (p: number) => c!.commit(p),
    chunkHashes: (n: string) => c!.chunkHashes(n),
    chunks: (n: string, i: number[]) => c!.chunks(n, i),
    tensor: (n: string) => c!.tensor(n),
  })
  const o: BisectCutsOptions = {
    plan: t.plan,
    rules,
    a: party(a),
    b: party(b),
    workers: { a: peerIdOf(keys[0]!), b: peerIdOf(keys[1]!) },
    job: t.job,
    inputs: t.inputs,
  }
  return bisectCuts(o)
}

/** Every tensor leaf `d.leaf` reads, fetched from `party`, hashes to what `side`'s cut lo committed. */
async function checkReads(
  t: Traced,
  d: Awaited<ReturnType<typeof search>>,
  party: RemoteCutParty,
  side: 'a' | 'b',
  trace: NamedTensors,
) {
  const lo = d.cuts.lo[side].body
  const names = leafReads(t.plan, d.leaf)
  expect(names.length).toBeGreaterThan(0)
  for (const name of names) {
    const got = await party.tensor(name)
    expect(got).toEqual(trace[name])
    expect(await exactHash(got)).toEqual(lo.tensors.find((c) => c.name === name)!.exact)
  }
}

describe('bisectCuts over the wire: mlp-tiny', () => {
  let t: Traced
  let honest: Contributor
  beforeAll(async () => {
    t = await tracedJob('mlp-tiny.onnx', { x: floats([1, 16], 7) })
    honest = await contributor(t)
  })

  it('exact: finds a liar at every leaf, as in process, and hands out the leaf’s inputs as committed', async () => {
    const n = t.plan.leaves.length
    for (let at = 0; at < n; at++) {
      const trace = await t.liar(at, 0.5)
      const liar = await contributor(t, { lie: () => trace })
      const a = await connect(t, honest, EXACT, {}, `r${at}`)
      const b = await connect(t, liar, EXACT)
      expect(await a.ready()).toBe(n)
      const d = await search(t, EXACT, a, b, [honest.id, liar.id])
      expect([d.leaf, d.node]).toEqual([at, t.plan.leaves[at]])
      const l = await local(t, EXACT, [t.honest, trace], [honest.key, liar.key])
      expect([d.leaf, d.rounds, d.probes]).toEqual([l.leaf, l.rounds, l.probes])
      // signatures are deterministic: the wire carries exactly the cuts the committer signed
      expect(d.cuts.hi.b.signed).toEqual(l.cuts.hi.b.signed)
      await checkReads(t, d, a, 'a', t.honest)
      await checkReads(t, d, b, 'b', trace)
      await a.close()
      await b.close()
    }
    expect(honest.counts.runs).toBe(n) // one trace per commit, however many questions
  })

  it('tolerance: a straddle is settled over tensorHashes and tensorChunks', async () => {
    const trace = await t.liar(1, 0.5)
    const liar = await contributor(t, { lie: () => trace })
    const a = await connect(t, honest, TOLERANCE, {}, 'tol')
    const b = await connect(t, liar, TOLERANCE)
    const d = await search(t, TOLERANCE, a, b, [honest.id, liar.id])
    expect(d.leaf).toBe(1)
    expect(d.disagreement?.diff).toBeGreaterThan(0.4)
    expect(a.wire.byAnswer.tensorHashes).toBeGreaterThan(0)
    expect(b.wire.byAnswer.tensorChunks).toBeGreaterThan(0)
    await checkReads(t, d, b, 'b', trace)
  })

  it('the first question waits on one commit; ready() asks no second one', async () => {
    const c = await contributor(t)
    const p = await connect(t, c, EXACT)
    const [cut, leaves] = await Promise.all([p.cut(-1), p.ready(), p.ready()])
    expect(cut).toBeInstanceOf(Uint8Array)
    expect(leaves).toBe(t.plan.leaves.length)
    expect(await p.ready()).toBe(leaves)
    expect(c.counts.runs).toBe(1)
    expect(p.wire.byAnswer.ready).toBeGreaterThan(0)
    expect(p.wire.frames).toBe(2)
  })
})

describe('bisectCuts over the wire: PP-OCR detection (1x3x64x256)', () => {
  it('finds a liar at leaf 150 whose lying trace was kept from the job (no second run)', async () => {
    const t = await tracedJob('vendor/ch_PP-OCRv4_det_infer.onnx', { x: floats([1, 3, 64, 256], 4) })
    const trace = await t.liar(150, 0.5)
    const honest = await contributor(t)
    const liar = await contributor(t, { lie: () => trace })
    const req = { requester: 'requester', model: t.job.model, input: t.job.input }
    await liar.server.traceJob(req, t.plan.model.bytes, t.inputs)
    expect(liar.counts.runs).toBe(1)
    const a = await connect(t, honest, EXACT)
    const b = await connect(t, liar, EXACT)
    const t0 = performance.now()
    const d = await search(t, EXACT, a, b, [honest.id, liar.id])
    console.log(
      `det over cuts: leaf ${d.leaf} in ${d.rounds} rounds, ${(performance.now() - t0).toFixed(0)} ms;` +
        ` received a ${a.wire.received} B, b ${b.wire.received} B`,
    )
    expect(d.leaf).toBe(150)
    expect(liar.counts.runs).toBe(1) // the commit took the kept trace
    await checkReads(t, d, b, 'b', trace)
  })
})
