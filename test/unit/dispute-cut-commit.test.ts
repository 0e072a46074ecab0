/**
 * Signed cuts (src/dispute/cut-commit.ts) over real onnxruntime-node traces of mlp-tiny and PP-OCR
 * detection: a signed cut opens to what was committed, every tampering is refused with a Dispute*
 * name, and compareCuts, driving the cuts.ts search, finds the leaf a liar changed under exact and
 * tolerance rules, hashing each tensor at most once.
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { PrivateKey } from '@libp2p/interface'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  type DisputePlan,
  type DisputeRules,
  disputeRules,
  leafNode,
  leafOutputs,
  tensorCommitment,
  tensorRule,
  tensorsAgree,
} from '../../src/dispute/commit.ts'
import {
  CUT_DOMAIN,
  type CutBody,
  compareCuts,
  createCutCommitter,
  MAX_CUT_BYTES,
  openCut,
} from '../../src/dispute/cut-commit.ts'
import { advance, cutAt, nextProbe, startSearch } from '../../src/dispute/cuts.ts'
import { withIntermediateOutputs } from '../../src/dispute/onnx-graph.ts'
import { modelCid } from '../../src/shared/cid.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { generateIdentity, peerIdOf } from '../../src/trust/keys.ts'
import { signRecord } from '../../src/trust/signed.ts'
import { tracedJob } from '../helpers/cut-trace.ts'
import { lyingTrace, shifted } from '../helpers/liar-trace.ts'
import { floats, ortRun } from '../helpers/ort-run.ts'

const EXACT = disputeRules({ kind: 'exact' })
const TOLERANCE = disputeRules({ kind: 'tolerance', atol: 1e-3, rtol: 1e-2 })
const positions = (plan: DisputePlan) => Array.from({ length: plan.leaves.length + 1 }, (_, i) => i - 1)

const traced = tracedJob
type Traced = Awaited<ReturnType<typeof traced>>

/** A contributor committing cuts of `trace`, and how to open them as an asker. */
function side(t: Traced, rules: DisputeRules, trace: NamedTensors, key: PrivateKey, job = t.job) {
  const committer = createCutCommitter({ trace, plan: t.plan, rules, key, ...job })
  const worker = peerIdOf(key)
  const open = (p: number, signed: Uint8Array, as = p) =>
    openCut(signed, { worker, ...t.job, position: as, names: cutAt(t.cp, as), plan: t.plan, rules })
  return { committer, worker, open, cut: async (p: number) => open(p, await committer.commit(p)) }
}

/** Names computed from leaf `from`'s outputs: the lie and everything downstream of it. */
function tainted(plan: DisputePlan, from: number): Set<string> {
  const out = new Set(leafOutputs(leafNode(plan, from)))
  for (let q = from + 1; q < plan.leaves.length; q++)
    if (leafNode(plan, q).inputs.some((i) => out.has(i.name)))
      for (const o of leafOutputs(leafNode(plan, q))) out.add(o)
  return out
}

/** A signed cut's frame, changed by `edit` and re-encoded with its signature kept. */
function edited(signed: Uint8Array, edit: (body: CutBody) => void): Uint8Array {
  const frame = dagCbor.decode(signed) as { body: CutBody; sig: Uint8Array }
  edit(frame.body)
  return dagCbor.encode(frame)
}

/** A frame `key` really signed around `body`. */
const signedFrame = async (body: unknown, key: PrivateKey) =>
  dagCbor.encode({ body, sig: await signRecord(CUT_DOMAIN, body, key) })

const refused = (p: Promise<unknown>, name: string, message?: RegExp) =>
  expect(p).rejects.toMatchObject({ name, ...(message ? { message: expect.stringMatching(message) } : {}) })

/** Drives the cuts.ts search; `agree(p)` compares both sides' cuts at p. */
async function search(n: number, agree: (p: number) => Promise<boolean>) {
  let s = startSearch(n)
  const asked: number[] = []
  for (let p = nextProbe(s.lo, s.hi); p !== undefined; p = nextProbe(s.lo, s.hi)) {
    asked.push(p)
    s = advance(s, await agree(p))
  }
  return { ...s, asked }
}

describe('signed cuts on mlp-tiny', () => {
  let t: Traced
  let key: PrivateKey
  beforeAll(async () => {
    t = await traced('mlp-tiny.onnx', { x: floats([1, 16], 7) })
    key = await generateIdentity()
  })

  it('opens every cut to the commitments of the tensors cutAt names, in order', async () => {
    const s = side(t, EXACT, t.honest, key)
    const [first, last] = [await s.cut(0), await s.cut(1)]
    for (const p of positions(t.plan)) {
      const body = await s.cut(p)
      expect([body.v, body.position, body.job.equals(t.job.job), body.input.equals(t.job.input)]).toEqual([
        1,
        p,
        true,
        true,
      ])
      const names = cutAt(t.cp, p)
      expect(body.tensors.map((o) => o.name)).toEqual(names)
      for (const [i, name] of names.entries()) {
        const want = await tensorCommitment(name, t.honest[name]!, tensorRule(t.plan, EXACT, name))
        expect(body.tensors[i]).toEqual(want.output)
      }
    }
    expect(cutAt(t.cp, -1)).toEqual(['x'])
    expect(s.committer.hashed).toBe(t.cp.lives.length)
    expect(() => compareCuts(first, last, t.plan, EXACT)).toThrow(/hold different tensors/)
  })

  it('refuses positions off the plan and tensors the trace lacks, as the contributor’s own faults', async () => {
    const s = side(t, EXACT, t.honest, key)
    for (const p of [-2, t.plan.leaves.length, 0.5])
      await refused(s.committer.commit(p), 'InvalidOptionError')
    const { x: _, ...noInputs } = t.honest
    await refused(side(t, EXACT, noInputs, key).committer.commit(-1), 'InvalidTensorError', /'x'/)
  })

  it('refuses each tampering with a Dispute* name', async () => {
    const s = side(t, EXACT, t.honest, key)
    const signed = await s.committer.commit(1)
    // Changed after signing: the signature no longer verifies.
    await refused(
      s.open(
        2,
        edited(signed, (b) => (b.position = 2)),
      ),
      'DisputeProofError',
    )
    await refused(
      s.open(
        1,
        edited(signed, (b) => b.tensors[0]!.exact[0]!++),
      ),
      'DisputeProofError',
    )
    const other = side(t, EXACT, t.honest, await generateIdentity())
    await refused(s.open(1, await other.committer.commit(1)), 'DisputeProofError', /not signed by/)
    // Signed, but the wrong answer to the question.
    await refused(s.open(2, signed), 'DisputeAnswerError', /answers the cut at 2/)
    // Made, and signed, under other rules than those the asker asked for.
    const asked = side(t, TOLERANCE, t.honest, key)
    const loose = side(t, disputeRules({ kind: 'tolerance', atol: 1, rtol: 1 }), t.honest, key)
    await refused(asked.open(1, await loose.committer.commit(1)), 'DisputeAnswerError', /other rules/)
    const job = { ...t.job, job: await modelCid(new TextEncoder().encode('another job')) }
    await refused(
      s.open(1, await side(t, EXACT, t.honest, key, job).committer.commit(1)),
      'DisputeAnswerError',
      /job/,
    )
    // Malformed.
    await refused(s.open(1, signed.subarray(0, signed.byteLength - 1)), 'DisputeAnswerError', /dag-cbor/)
    await refused(
      s.open(
        1,
        edited(signed, (b) => ((b as { extra?: number }).extra = 1)),
      ),
      'DisputeAnswerError',
    )
    const body = dagCbor.decode<{ body: CutBody }>(signed).body
    const coarse = { ...body, tensors: [{ ...body.tensors[0]!, coarse: new Uint8Array(32) }] }
    await refused(s.open(1, await signedFrame(coarse, key)), 'DisputeAnswerError', /tensors\[0\]/)
    await expect(s.open(1, signed)).resolves.toEqual(body)
  })

  it(`bounds a cut to ${MAX_CUT_BYTES} bytes before decoding it`, async () => {
    const s = side(t, EXACT, t.honest, key)
    const body = dagCbor.decode<{ body: CutBody }>(await s.committer.commit(1)).body
    const many = (n: number) => ({
      ...body,
      tensors: Array.from({ length: n }, (_, i) => ({
        name: `${'n'.repeat(200)}${i}`,
        exact: new Uint8Array(32),
      })),
    })
    const under = await signedFrame(many(200), key)
    const over = await signedFrame(many(300), key)
    expect([under.byteLength < MAX_CUT_BYTES, over.byteLength > MAX_CUT_BYTES]).toEqual([true, true])
    await refused(s.open(1, under), 'DisputeAnswerError', /wrong tensors/)
    await refused(s.open(1, over), 'DisputeAnswerError', /more than 65536 bytes/)
  })
})

describe('signed cuts on PP-OCR detection (1x3x64x256)', () => {
  const LIAR = 150
  let t: Traced
  let keys: PrivateKey[]
  let lie: Set<string>
  beforeAll(async () => {
    t = await traced('vendor/ch_PP-OCRv4_det_infer.onnx', { x: floats([1, 3, 64, 256], 4) })
    keys = [await generateIdentity(), await generateIdentity()]
    lie = tainted(t.plan, LIAR)
  })
  const liar = async (by: number) => ({
    ...t.inputs,
    ...(await lyingTrace(t.plan, t.honest, t.inputs, LIAR, shifted(by))),
  })

  it('refuses a reordered cut: unsigned, and signed', async () => {
    const s = side(t, EXACT, t.honest, keys[0]!)
    const p = positions(t.plan).find((q) => cutAt(t.cp, q).length >= 3)!
    const signed = await s.committer.commit(p)
    await refused(
      s.open(
        p,
        edited(signed, (b) => b.tensors.reverse()),
      ),
      'DisputeProofError',
    )
    const body = dagCbor.decode<{ body: CutBody }>(signed).body
    const reversed = { ...body, tensors: [...body.tensors].reverse() }
    await refused(s.open(p, await signedFrame(reversed, keys[0]!)), 'DisputeAnswerError', /wrong tensors/)
  })

  it('exact: honest runs agree at every cut; a liar differs exactly where its lie is live', async () => {
    const again = { ...t.inputs, ...(await ortRun(withIntermediateOutputs(t.plan.model), t.inputs)) }
    const [a, b, l] = [
      side(t, EXACT, t.honest, keys[0]!),
      side(t, EXACT, again, keys[1]!),
      side(t, EXACT, await liar(0.5), keys[1]!),
    ]
    const verdicts = new Map<number, string>()
    for (const p of positions(t.plan)) {
      const ours = await a.cut(p)
      expect(compareCuts(ours, await b.cut(p), t.plan, EXACT), `honest at ${p}`).toBe('agree')
      verdicts.set(p, compareCuts(ours, await l.cut(p), t.plan, EXACT) as string)
    }
    for (const p of positions(t.plan)) {
      const live = cutAt(t.cp, p).some((name) => lie.has(name))
      expect(verdicts.get(p), `liar at ${p}`).toBe(live ? 'differ' : 'agree')
      if (p < LIAR) expect(live).toBe(false)
    }
    expect(verdicts.get(LIAR)).toBe('differ')
    expect(a.committer.hashed).toBe(t.cp.lives.length)
  })

  it('exact: the search finds the liar, each side hashing each tensor once', async () => {
    const [a, l] = [side(t, EXACT, t.honest, keys[0]!), side(t, EXACT, await liar(0.5), keys[1]!)]
    const agree = async (p: number) => compareCuts(await a.cut(p), await l.cut(p), t.plan, EXACT) === 'agree'
    const s = await search(t.plan.leaves.length, agree)
    expect([s.lo, s.hi]).toEqual([LIAR - 1, LIAR])
    const distinct = new Set(s.asked.flatMap((p) => cutAt(t.cp, p))).size
    for (const p of s.asked) await agree(p) // asked again: nothing hashed again
    expect([a.committer.hashed, l.committer.hashed]).toEqual([distinct, distinct])
    expect(distinct).toBeLessThan(s.asked.length * 5)
    console.log(`det search: asked ${s.asked.join(', ')}; ${distinct} tensors hashed of ${t.cp.lives.length}`)
  })

  it('tolerance: hashes agree only where values do; a lie below it agrees, one above it is found', async () => {
    const a = side(t, TOLERANCE, t.honest, keys[0]!)
    // 1e-7 stays under the rule downstream; 1e-6 grows to 2.7e-3 by the last Conv (conv2d_497).
    const [tiny, big] = [await liar(1e-7), await liar(0.5)]
    const liars = [
      { trace: tiny, side: side(t, TOLERANCE, tiny, keys[1]!), straddles: 0, differ: 0 },
      { trace: big, side: side(t, TOLERANCE, big, keys[1]!), straddles: 0, differ: 0 },
    ]
    const rule = (n: string) => tensorRule(t.plan, TOLERANCE, n)
    const valuesAgree = (names: string[], trace: NamedTensors) =>
      names.every((n) => tensorsAgree(n, t.honest[n]!, trace[n]!, rule(n)))
    /** Whether the sides agree once straddles are settled by value, as their chunks would settle them. */
    const settled = (r: ReturnType<typeof compareCuts>, trace: NamedTensors) =>
      typeof r === 'string' ? r === 'agree' : valuesAgree(r.straddle, trace)
    for (const p of positions(t.plan)) {
      const ours = await a.cut(p)
      for (const l of liars) {
        const theirs = await l.side.cut(p)
        const r = compareCuts(ours, theirs, t.plan, TOLERANCE)
        if (p < LIAR) expect(r, `before the lie, at ${p}`).toBe('agree')
        if (p === LIAR)
          expect(ours.tensors.some((o, i) => o.exact.join() !== theirs.tensors[i]!.exact.join())).toBe(true)
        expect(r, `at ${p}`).not.toBe('differ') // every rule is a tolerance
        expect(settled(r, l.trace), `at ${p}`).toBe(valuesAgree(cutAt(t.cp, p), l.trace))
        if (typeof r === 'object') l.straddles++
        if (!valuesAgree(cutAt(t.cp, p), l.trace)) l.differ++
      }
    }
    expect(liars[0]!.differ).toBe(0)
    expect(valuesAgree(cutAt(t.cp, LIAR), big)).toBe(false)
    const agree = async (p: number) =>
      settled(compareCuts(await a.cut(p), await liars[1]!.side.cut(p), t.plan, TOLERANCE), big)
    const s = await search(t.plan.leaves.length, agree)
    expect([s.lo, s.hi]).toEqual([LIAR - 1, LIAR])
    const [lt, lb] = liars.map((l) => `${l.straddles} straddles, ${l.differ} cuts differing by value`)
    console.log(`det tolerance: the 1e-7 lie ${lt}; the 0.5 lie ${lb}`)
  })
})
