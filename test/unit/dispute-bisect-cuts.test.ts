/**
 * The requester's search over cuts (src/dispute/bisect-cuts.ts) between cut committers over real
 * onnxruntime-node traces of mlp-tiny and PP-OCR detection: it finds the leaf a liar changed in at
 * most searchRounds(N) probes with both sides' signed cuts around it, settles tolerance straddles by
 * chunks, and blames the side whose answer fails (a Dispute* name for a lie, none for transport).
 */
import type { PrivateKey } from '@libp2p/interface'
import { beforeAll, describe, expect, it } from 'vitest'
import { type BisectCutsOptions, bisectCuts, type CutParty } from '../../src/dispute/bisect-cuts.ts'
import { CHUNK } from '../../src/dispute/chunks.ts'
import { type DisputeRules, disputeRules, leafNode, leafOutputs } from '../../src/dispute/commit.ts'
import { compareCuts, createCutCommitter, openCut } from '../../src/dispute/cut-commit.ts'
import { cutAt, nextProbe, searchRounds } from '../../src/dispute/cuts.ts'
import type { NamedTensors, Tensor } from '../../src/shared/tensor.ts'
import { generateIdentity, peerIdOf } from '../../src/trust/keys.ts'
import { tracedJob } from '../helpers/cut-trace.ts'
import { lyingTrace, shifted } from '../helpers/liar-trace.ts'
import { floats } from '../helpers/ort-run.ts'

const EXACT = disputeRules({ kind: 'exact' })
const TOLERANCE = disputeRules({ kind: 'tolerance', atol: 1e-3, rtol: 1e-2 })

const traced = tracedJob
type Traced = Awaited<ReturnType<typeof traced>>

/** What a side was asked: positions, chunk-hash requests, chunks (as name#index). */
interface Tap {
  positions: number[]
  hashes: number
  chunks: string[]
}

/** A contributor over `trace`, signing with `key`, its party counting what it is asked. */
function side(t: Traced, rules: DisputeRules, trace: NamedTensors, key: PrivateKey) {
  const committer = createCutCommitter({ trace, plan: t.plan, rules, key, ...t.job })
  const tap: Tap = { positions: [], hashes: 0, chunks: [] }
  const party: CutParty = {
    cut(p) {
      tap.positions.push(p)
      return committer.commit(p)
    },
    chunkHashes(name) {
      tap.hashes++
      return committer.chunkHashes(name)
    },
    chunks(name, indices) {
      tap.chunks.push(...indices.map((i) => `${name}#${i}`))
      return committer.chunks(name, indices)
    },
    tensor: (name) => committer.tensor(name),
  }
  return { committer, party, tap, worker: peerIdOf(key) }
}
type Side = ReturnType<typeof side>

const run = (t: Traced, rules: DisputeRules, a: Side, b: Side, more: Partial<BisectCutsOptions> = {}) =>
  bisectCuts({
    plan: t.plan,
    rules,
    a: a.party,
    b: b.party,
    workers: { a: a.worker, b: b.worker },
    job: t.job,
    inputs: t.inputs,
    ...more,
  })

const refused = (p: Promise<unknown>, name: string | RegExp, party?: string) =>
  expect(p).rejects.toMatchObject({ name: expect.stringMatching(name), ...(party ? { party } : {}) })

/** A found divergence's cuts reopen as signed by each side, agree at lo and differ at hi. */
async function checkCuts(t: Traced, rules: DisputeRules, d: Awaited<ReturnType<typeof run>>, sides: Side[]) {
  for (const [at, p] of [
    ['lo', d.leaf - 1],
    ['hi', d.leaf],
  ] as const) {
    const [a, b] = [d.cuts[at].a, d.cuts[at].b]
    for (const [k, cut] of [a, b].entries()) {
      const expect_ = {
        ...t.job,
        worker: sides[k]!.worker,
        position: p,
        names: cutAt(t.cp, p),
        plan: t.plan,
        rules,
      }
      expect(await openCut(cut.signed, expect_)).toEqual(cut.body)
    }
    const r = compareCuts(a.body, b.body, t.plan, rules)
    if (rules === EXACT) expect(r).toBe(at === 'lo' ? 'agree' : 'differ')
  }
}

describe('bisectCuts on mlp-tiny', () => {
  let t: Traced
  let keys: PrivateKey[]
  beforeAll(async () => {
    t = await traced('mlp-tiny.onnx', { x: floats([1, 16], 7) })
    keys = [await generateIdentity(), await generateIdentity(), await generateIdentity()]
  })

  it('a committer serves chunk hashes and chunks of cut tensors only, hashing each tensor once', async () => {
    const { committer } = side(t, TOLERANCE, t.honest, keys[0]!)
    const h = await committer.chunkHashes('h0')
    await committer.commit(2)
    expect([h.dims, h.exact.length, h.coarse?.length, committer.hashed]).toEqual([t.honest.h0!.dims, 1, 1, 1])
    const [chunk] = await committer.chunks('h0', [0])
    const data = t.honest.h0!.data as Float32Array
    expect(chunk).toEqual(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
    for (const name of ['b0', 'nope']) await refused(committer.chunkHashes(name), 'InvalidOptionError')
    for (const bad of [[1], [-1], [0.5]]) await refused(committer.chunks('h0', bad), 'InvalidOptionError')
    await refused(committer.chunks('nope', [0]), 'InvalidOptionError')
  })

  it('exact: finds a liar at every leaf in at most searchRounds(N) probes', async () => {
    const n = t.plan.leaves.length
    const a = side(t, EXACT, t.honest, keys[0]!)
    for (let at = 0; at < n; at++) {
      const b = side(t, EXACT, await t.liar(at, 0.5), keys[1]!)
      const d = await run(t, EXACT, a, b)
      expect([d.leaf, d.node, d.straddles]).toEqual([at, t.plan.leaves[at], 0])
      expect(d.probes).toBeLessThanOrEqual(searchRounds(n))
      // The first probe goes with the ends: one round each after that.
      expect(d.rounds).toBe(Math.max(1, d.probes))
      await checkCuts(t, EXACT, d, [a, b])
    }
    await refused(run(t, EXACT, a, side(t, EXACT, t.honest, keys[1]!)), 'NoDivergenceError')
  })

  it('tolerance: a 0.5 lie is settled by chunks and found, with the chunk that disagrees', async () => {
    const at = 1
    const [a, b] = [
      side(t, TOLERANCE, t.honest, keys[0]!),
      side(t, TOLERANCE, await t.liar(at, 0.5), keys[1]!),
    ]
    const d = await run(t, TOLERANCE, a, b)
    expect(d.leaf).toBe(at)
    expect(leafOutputs(leafNode(t.plan, at))).toContain(d.disagreement?.name)
    expect(d.disagreement!.diff).toBeGreaterThan(0.4)
    expect([a.tap.hashes, b.tap.hashes, a.tap.chunks.length > 0]).toEqual([b.tap.hashes, a.tap.hashes, true])
    await checkCuts(t, TOLERANCE, d, [a, b])
  })

  it('blames the side whose cut another key signed, or whose cut -1 is not the job’s inputs', async () => {
    const a = side(t, EXACT, t.honest, keys[0]!)
    const liar = await t.liar(0, 0.5)
    const forged = { ...side(t, EXACT, liar, keys[2]!), worker: peerIdOf(keys[1]!) }
    await refused(run(t, EXACT, a, forged), 'DisputeProofError', 'b')
    const x = t.inputs.x!
    const other: Tensor = { ...x, data: (x.data as Float32Array).map((v) => v + 1) }
    const wrongInputs = side(t, EXACT, { ...liar, x: other }, keys[1]!)
    await refused(run(t, EXACT, wrongInputs, a), 'DisputeProofError', 'a')
    // Without the inputs no one is proven to have run others: blamed on both, not as a lie.
    await refused(run(t, EXACT, a, wrongInputs, { inputs: undefined }), 'InvalidOptionError', 'both')
    await refused(run(t, EXACT, a, wrongInputs, { inputs: { x: other } }), 'InvalidOptionError')
  })

  it('blames chunks off their chunk hashes, and chunk hashes off the cut', async () => {
    const a = side(t, TOLERANCE, t.honest, keys[0]!)
    const b = () => side(t, TOLERANCE, liar, keys[1]!)
    const liar = await t.liar(1, 0.5)
    const badChunks = b()
    const chunks = badChunks.party.chunks
    badChunks.party.chunks = async (name, indices) =>
      (await chunks(name, indices)).map((c) => c.map((v) => v ^ 1))
    await refused(run(t, TOLERANCE, a, badChunks), 'DisputeCommitmentError', 'b')
    const badHashes = b()
    badHashes.party.chunkHashes = (name) => a.committer.chunkHashes(name)
    await refused(run(t, TOLERANCE, a, badHashes), 'DisputeProofError', 'b')
    const short = b()
    short.party.chunks = async (name, indices) => (await short.committer.chunks(name, indices)).slice(1)
    await refused(run(t, TOLERANCE, a, short), 'DisputeAnswerError', 'b')
  })

  it('blames a transport failure on its side without a Dispute* name, and stops when aborted', async () => {
    const a = side(t, EXACT, t.honest, keys[0]!)
    const b = side(t, EXACT, await t.liar(0, 0.5), keys[1]!)
    const broken = { ...b, party: { ...b.party, cut: async () => Promise.reject(new Error('link reset')) } }
    const err = await run(t, EXACT, broken, b).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'Error', message: 'link reset', party: 'a' })
    await refused(run(t, EXACT, a, b, { signal: AbortSignal.abort() }), 'AbortError')
  })
})

describe('bisectCuts on PP-OCR detection (1x3x64x256)', () => {
  const LIAR = 150
  let t: Traced
  let keys: PrivateKey[]
  beforeAll(async () => {
    t = await traced('vendor/ch_PP-OCRv4_det_infer.onnx', { x: floats([1, 3, 64, 256], 4) })
    keys = [await generateIdentity(), await generateIdentity(), await generateIdentity()]
  })
  const bytesOf = (trace: NamedTensors, positions: number[]) =>
    [...new Set(positions.flatMap((p) => cutAt(t.cp, p)))].reduce((s, n) => s + trace[n]!.data.byteLength, 0)

  it('exact: finds liars at several leaves, each side hashing only the cuts asked', async () => {
    const n = t.plan.leaves.length
    const a = side(t, EXACT, t.honest, keys[0]!)
    for (const at of [LIAR, n - 1, 7]) {
      const b = side(t, EXACT, await t.liar(at, 0.5), keys[1]!)
      const d = await run(t, EXACT, a, b)
      expect([d.leaf, d.straddles, d.rounds]).toEqual([at, 0, d.probes])
      expect(d.probes).toBeLessThanOrEqual(searchRounds(n))
      await checkCuts(t, EXACT, d, [a, b])
      const mb = (bytesOf(t.honest, b.tap.positions) / 2 ** 20).toFixed(2)
      console.log(
        `det exact, liar at ${at}: ${d.probes} probes, liar hashed ${b.committer.hashed} tensors (${mb} MiB)`,
      )
    }
  })

  it('verifies a probe only where it proves something: the final lo and hi, not the cuts between', async () => {
    const a = side(t, EXACT, t.honest, keys[0]!)
    const liar = await t.liar(LIAR, 0.5)
    const b = side(t, EXACT, liar, keys[1]!)
    const d = await run(t, EXACT, a, b)
    const forger = side(t, EXACT, liar, keys[2]!).committer
    const final = [d.cuts.lo.b.body.position, d.cuts.hi.b.body.position]
    const between = b.tap.positions.filter((p) => p !== -1 && p !== t.cp.size - 1 && !final.includes(p))
    expect(between.length).toBeGreaterThan(0)
    // Another key on the probes between: the search still ends at the same leaf, its proofs sound.
    const steering = side(t, EXACT, liar, keys[1]!)
    steering.party.cut = (p) => (between.includes(p) ? forger : b.committer).commit(p)
    await expect(run(t, EXACT, a, steering)).resolves.toMatchObject({ leaf: d.leaf })
    // Another key on the final hi (or lo): blamed, though nothing was verified when it came.
    for (const at of final) {
      const forged = side(t, EXACT, liar, keys[1]!)
      forged.party.cut = (p) => (p === at ? forger : b.committer).commit(p)
      await refused(run(t, EXACT, a, forged), 'DisputeProofError', 'b')
    }
  })

  it('blames a side whose cuts commit to one tensor two ways', async () => {
    const a = side(t, EXACT, t.honest, keys[0]!)
    const liar = await t.liar(LIAR, 0.5)
    const b = side(t, EXACT, liar, keys[1]!)
    await run(t, EXACT, a, b)
    // The first cut on the search path that shares a tensor with a cut asked before it.
    const asked = b.tap.positions
    const j = asked.findIndex((p, i) =>
      cutAt(t.cp, p).some((n) => asked.slice(0, i).some((q) => cutAt(t.cp, q).includes(n))),
    )
    expect(j).toBeGreaterThan(1)
    const name = cutAt(t.cp, asked[j]!).find((n) =>
      asked.slice(0, j).some((q) => cutAt(t.cp, q).includes(n)),
    )!
    const other = side(t, EXACT, { ...liar, [name]: shifted(1)(liar[name]!) }, keys[1]!)
    const two = side(t, EXACT, liar, keys[1]!)
    two.party.cut = (p) => (p === asked[j] ? other : b).committer.commit(p)
    const err = await run(t, EXACT, a, two).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'DisputeProofError', party: 'b', message: expect.stringMatching(name) })
    console.log(`det equivocation: '${name}' at ${asked[j]} after ${asked.slice(0, j)}`)
  })

  /** `trace` with `by` added to every computed tensor: a backend's drift. */
  const drifted = (trace: NamedTensors, by: number) =>
    Object.fromEntries(Object.entries(trace).map(([k, v]) => [k, k in t.inputs ? v : shifted(by)(v)]))

  it('tolerance: drift everywhere is no divergence; a lie under drift is found past straddles', async () => {
    const a = side(t, TOLERANCE, t.honest, keys[0]!)
    for (const by of [1e-7, 4e-4]) {
      const d = side(t, TOLERANCE, drifted(t.honest, by), keys[1]!)
      await refused(run(t, TOLERANCE, a, d), 'NoDivergenceError')
      // The output is a sigmoid saturated near 0 on this input: its grid hashes agree, nothing straddles.
      // The first probe went with the ends, its chunk hashes and the output's too; no chunk moved.
      const n = t.plan.leaves.length
      expect([d.tap.positions, d.tap.chunks]).toEqual([[-1, n - 1, nextProbe(-1, n - 1)], []])
    }
    const b = side(t, TOLERANCE, drifted(await t.liar(LIAR, 100), 4e-4), keys[1]!)
    const d = await run(t, TOLERANCE, a, b)
    expect(d.leaf).toBe(LIAR)
    expect(d.straddles).toBeGreaterThan(0)
    // A tensor settled as agreeing is not settled again in a later cut: no chunk is fetched twice.
    expect(new Set(b.tap.chunks).size).toBe(b.tap.chunks.length)
    expect(leafOutputs(leafNode(t.plan, LIAR))).toContain(d.disagreement?.name)
    console.log(
      `det drift 4e-4 and a lie at ${LIAR}: ${d.probes} probes, ${d.rounds} rounds, ${d.straddles} straddles, ` +
        `${b.tap.hashes} chunk hashes, ${b.tap.chunks.length} chunks`,
    )
  })

  it('tolerance: a lie in the last chunk only, under drift, is found past the chunks that agree', async () => {
    const a = side(t, TOLERANCE, t.honest, keys[0]!)
    const tail = (x: Tensor): Tensor => {
      const data = (x.data as Float32Array).map((v, i, all) => (i >= all.length - CHUNK ? v + 100 : v))
      return { ...x, data }
    }
    const lie = { ...t.inputs, ...(await lyingTrace(t.plan, t.honest, t.inputs, LIAR, tail)) }
    const b = side(t, TOLERANCE, drifted(lie, 4e-4), keys[1]!)
    const d = await run(t, TOLERANCE, a, b)
    const last = Math.ceil(t.honest[d.disagreement!.name]!.data.length / CHUNK) - 1
    expect([d.leaf, d.disagreement?.chunk]).toEqual([LIAR, last])
    console.log(
      `det tail lie under drift: ${d.rounds} rounds, ${d.straddles} straddles, ${b.tap.chunks.length} chunks`,
    )
  })

  it('tolerance: a lie at 150 the outputs absorb is no divergence; one they show is found', async () => {
    const a = side(t, TOLERANCE, t.honest, keys[0]!)
    const small = side(t, TOLERANCE, await t.liar(LIAR, 0.5), keys[1]!)
    await refused(run(t, TOLERANCE, a, small), 'NoDivergenceError')
    const b = side(t, TOLERANCE, await t.liar(LIAR, 100), keys[1]!)
    const d = await run(t, TOLERANCE, a, b)
    expect(d.leaf).toBe(LIAR)
    expect(leafOutputs(leafNode(t.plan, LIAR))).toContain(d.disagreement?.name)
    await checkCuts(t, TOLERANCE, d, [a, b])
    console.log(
      `det tolerance, liar at ${LIAR}: ${d.probes} probes, ${d.rounds} rounds, ${d.straddles} straddles, ` +
        `${b.tap.hashes} chunk hashes, ${b.tap.chunks.length} chunks, disagreement ${JSON.stringify(d.disagreement)}`,
    )
  })
})
