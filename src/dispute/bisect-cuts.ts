/**
 * The requester's search over cuts (cuts.ts): both sides sign their cut at each probe, one round
 * each, and a tolerance straddle is settled by chunks as bisect.ts settles a leaf's. Ends at the
 * leaf whose inputs both sides agree on (cut lo) and whose outputs they do not (cut hi).
 *
 *   const d = await bisectCuts({ plan, rules, a, b, workers, job, inputs })
 *   d.leaf, d.cuts.lo, d.cuts.hi // what the referee is shown
 */
import { DisputeProofError, InvalidOptionError, NoDivergenceError } from '../shared/errors.ts'
import {
  BYTES_PER_ELEMENT,
  elementCount,
  type NamedTensors,
  type Tensor,
  type TensorData,
} from '../shared/tensor.ts'
import { tensorsCid } from '../shared/tensor-codec.ts'
import { asker, blame, CHUNK_BATCH, checkAnswer, type Divergence, type Pair, type Side } from './bisect.ts'
import {
  type ChunkHashes,
  checkChunk,
  checkChunkHashes,
  chunkDiff,
  chunksAgree,
  differingChunks,
} from './chunks.ts'
import {
  type DisputePlan,
  type DisputeRules,
  type OutputCommitment,
  tensorCommitment,
  tensorRule,
  toleranceOf,
} from './commit.ts'
import { type CutBody, type CutJob, compareCuts, type ReadCut, readCut, verifyCut } from './cut-commit.ts'
import { advance, type CutPlan, cutAt, cutPlan, nextProbe, startSearch } from './cuts.ts'
import { sameBytes } from './merkle.ts'
import { DISPUTE_LIMITS } from './wire-frames.ts'

/** One side of a dispute over cuts: what createCutCommitter answers, or a remote contributor. */
export interface CutParty {
  /** Its signed cut at `position` (dag-cbor `{ body, sig }`). */
  cut(position: number): Promise<Uint8Array>
  /** The chunk hashes of tensor `name`, which its commitment in every cut digests. */
  chunkHashes(name: string): Promise<ChunkHashes>
  /** Chunks of tensor `name`, as little-endian bytes, in the order asked. */
  chunks(name: string, indices: number[]): Promise<Uint8Array[]>
  /** The whole tensor `name`, live across some cut: what the referee runs a node on. */
  tensor(name: string): Promise<Tensor>
}

/** A signed cut as received, and its checked body. */
export interface SignedCut {
  signed: Uint8Array
  body: CutBody
  sig: Uint8Array
}

export type Disagreement = NonNullable<Divergence['disagreement']>

export interface CutDivergence {
  /** The leaf that diverges: position hi, whose inputs sit in cut lo = hi - 1. */
  leaf: number
  /** Its node index. */
  node: number
  /** Rounds of questions: the two ends with the first probe (one round), each later probe, and chunk rounds. */
  rounds: number
  /** Cuts probed between the ends: at most searchRounds(N). */
  probes: number
  /** Cuts whose grid hashes differed but whose values agree. */
  straddles: number
  cuts: { lo: Pair<SignedCut>; hi: Pair<SignedCut> }
  /** At cut hi, the first chunk found to disagree under a tolerance. */
  disagreement?: Disagreement
  /**
   * Bytes of cut hi's tensors (those compared under a tolerance) as each side's own chunk hashes give
   * them: what asking that side for them costs. A side can misstate only its own.
   */
  hiBytes?: Pair<Record<string, number>>
}

export interface BisectCutsOptions {
  plan: DisputePlan
  rules: DisputeRules
  a: CutParty
  b: CutParty
  /** Each side's peer id: the signer of its cuts. */
  workers: Pair<string>
  /** The job each side's cuts must name: one for both, or each replica's own signed job. */
  job: CutJob | Pair<CutJob>
  /** The job's inputs, to tell which side's cut -1 is not them (without, a difference blames no one). */
  inputs?: NamedTensors
  /**
   * Each side's signed cut at N-1 if the caller asked for it already (to bind the side's result):
   * the search takes it instead of asking again, so no side can show the binding one cut and the
   * search another.
   */
  last?: Pair<Uint8Array>
  /** The caller checked that `inputs` hash to the job's input CID (receipts it verified name them). */
  inputsChecked?: boolean
  signal?: AbortSignal
}

/**
 * Chunks asked of a side in one round at most: every question's answer timer starts when it is
 * sent and the side answers one at a time, so a round stays within 8 full questions (≤ 4 MiB).
 */
const MAX_BATCH = 8 * DISPUTE_LIMITS.indices

/** The next probe if this one agrees, and if it differs. */
type Next = { agree?: number; differ?: number }
/** A comparison once straddles are settled by value. */
type Verdict = { agree: boolean; disagreement?: Disagreement }
type Chunk = { name: string; index: number }
interface Search {
  o: BisectCutsOptions
  cp: CutPlan
  ask: ReturnType<typeof asker<CutParty>>
  /** Each side's commitment to every tensor it has shown, and the cut that first showed it. */
  shown: Pair<Map<string, { commitment: OutputCommitment; cut: ReadCut }>>
  /** Each side's chunk hashes, checked against those commitments. */
  hashes: Pair<Map<string, ChunkHashes>>
  /** Tensors whose chunk hashes were asked of each side (with a cut), answered or not yet. */
  asked: Pair<Set<string>>
  /** The job's inputs (cut -1). */
  inputs: Set<string>
  /** Tensors settled by value, agreeing or not: commitments cannot change, so neither can that. */
  agreed: Set<string>
  differs: Map<string, Verdict>
  straddles: number
  /** Cuts asked ahead: the first probe (with the ends), and the next one guessed (with a straddle's chunks). */
  ahead: Map<number, Pair<SignedCut>>
}

const tol = (s: Search, name: string) => toleranceOf(tensorRule(s.o.plan, s.o.rules, name))
const sameHash = (x?: Uint8Array, y?: Uint8Array) => (!x && !y) || sameBytes(x, y)
const sameCommitment = (x: OutputCommitment, y: OutputCommitment) =>
  sameHash(x.exact, y.exact) && sameHash(x.coarse, y.coarse) && sameHash(x.shifted, y.shifted)

/** The job `side`'s cuts must name. */
const jobOf = (o: BisectCutsOptions, side: Side): CutJob => ('a' in o.job ? o.job[side] : o.job)

/**
 * `side`'s cut at `p`, read, and consistent with every cut it sent before. Signatures are verified
 * where a cut proves something: the ends (cut -1 may blame a side), both cuts of an equivocation, and
 * the final lo and hi (proven). A probe in between only steers the search, and its answer came over
 * the worker's own authenticated stream: verifying all of them would cost each dispute ~0.3 ms a cut.
 */
const openOne = async (s: Search, party: CutParty, side: Side, p: number): Promise<SignedCut> =>
  take(s, side, p, await party.cut(p))

/**
 * `side`'s cut at `p` and, under a tolerance, in the same round, the chunk hashes of its tensors not
 * hashed yet (checked against the cut): with drift every probe straddles, and a round of its own for
 * them cost each probe one more. Cut -1 is the job's inputs, never a tolerance matter.
 */
async function openWithHashes(
  s: Search,
  party: CutParty,
  side: Side,
  p: number,
  given?: Uint8Array,
): Promise<SignedCut> {
  const asked = s.asked[side]
  // Inputs are compared exactly at cut -1 (checkInputs): they never straddle in a later cut.
  const fresh = (name: string) => tol(s, name) && !asked.has(name) && !s.inputs.has(name)
  const names = p < 0 ? [] : cutAt(s.cp, p).filter(fresh)
  for (const name of names) asked.add(name)
  const [cut, hashes] = await Promise.all([
    given ? take(s, side, p, given) : openOne(s, party, side, p),
    Promise.all(names.map((name) => party.chunkHashes(name))),
  ])
  await Promise.all(names.map((name, k) => keepHashes(s, side, cut, name, hashes[k]!)))
  return cut
}

/** Keeps `side`'s chunk hashes of `name` once they digest to its commitment in `cut`. */
async function keepHashes(s: Search, side: Side, cut: SignedCut, name: string, h: ChunkHashes) {
  const committed = cut.body.tensors.find((t) => t.name === name)!
  await checkChunkHashes(h, committed, tol(s, name))
  s.hashes[side].set(name, h)
}

/** `side`'s signed cut at `p` (asked now, or given), read and checked as openOne says. */
async function take(s: Search, side: Side, p: number, signed: Uint8Array): Promise<SignedCut> {
  const { plan, rules, workers } = s.o
  const job = jobOf(s.o, side)
  const names = cutAt(s.cp, p)
  const read = await readCut(signed, { ...job, worker: workers[side], position: p, names, plan, rules })
  if (p === -1 || p === s.cp.size - 1) await verifyCut(read, workers[side])
  for (const t of read.body.tensors) {
    const before = s.shown[side].get(t.name)
    // Two signed commitments to one tensor: the divergence could otherwise hide in a tensor of cut lo.
    if (before && !sameCommitment(before.commitment, t)) {
      await Promise.all([verifyCut(before.cut, workers[side]), verifyCut(read, workers[side])])
      throw new DisputeProofError(`the cut at ${p} changes the commitment to '${t.name}'`)
    }
    if (!before) s.shown[side].set(t.name, { commitment: t, cut: read })
  }
  return { signed, body: read.body, sig: read.sig }
}

/** Whether both sides' cuts agree under the rules, settling straddles by their chunks. */
async function verdict(s: Search, cuts: Pair<SignedCut>, next: Next = {}): Promise<Verdict> {
  const r = compareCuts(cuts.a.body, cuts.b.body, s.o.plan, s.o.rules)
  if (typeof r === 'string') return { agree: r === 'agree' }
  const known = r.straddle.find((name) => s.differs.has(name))
  if (known) return s.differs.get(known)!
  const names = r.straddle.filter((name) => !s.agreed.has(name))
  if (!names.length) return { agree: true }
  const v = await settle(s, names, cuts, next)
  if (v.agree) s.straddles++
  return v
}

/**
 * Straddling tensors: their chunk hashes (asked with their cut, else one round now), then the chunks
 * that differ on both grids, in rounds of CHUNK_BATCH, 2·CHUNK_BATCH, … chunks; `next` go with the first.
 */
async function settle(s: Search, names: string[], cuts: Pair<SignedCut>, next: Next): Promise<Verdict> {
  // Every cut came with its hashes (openWithHashes): a guard, should a straddle ever lack them.
  const missing = names.filter((name) => !s.hashes.a.has(name) || !s.hashes.b.has(name))
  if (missing.length)
    await s.ask.round((party, side) =>
      Promise.all(
        missing.map(async (name) => keepHashes(s, side, cuts[side], name, await party.chunkHashes(name))),
      ),
    )
  const differ = (name: string, v: Verdict) => {
    s.differs.set(name, v)
    return v
  }
  const pending: Chunk[] = []
  const left = new Map<string, number>() // chunks of each name still to compare
  for (const name of names) {
    const [ha, hb] = [s.hashes.a.get(name)!, s.hashes.b.get(name)!]
    if (ha.dtype !== hb.dtype || ha.dims.join() !== hb.dims.join()) return differ(name, { agree: false })
    const indices = differingChunks(ha, hb)
    if (!left.set(name, indices.length).get(name)) s.agreed.add(name)
    for (const index of indices) pending.push({ name, index })
  }
  // A lie shows in the first chunks that differ, while agreement needs every one compared: batches
  // double (to MAX_BATCH), so a straddle of n chunks costs about log2(n / CHUNK_BATCH) rounds, not
  // n / CHUNK_BATCH, and a lie moves at most twice the chunks a batch of CHUNK_BATCH would.
  for (
    let from = 0, size = CHUNK_BATCH;
    from < pending.length;
    from += size, size = Math.min(2 * size, MAX_BATCH)
  ) {
    const batch = pending.slice(from, from + size)
    // The first chunk round also asks the cut guessNext expects to probe next: a probe then costs
    // one round, straddle or not, unless the guess was wrong (a cut a side hashed for nothing).
    const ahead = from === 0 ? guessNext(s, names, pending.length, next) : []
    const answers = await s.ask.round((party, side) =>
      Promise.all([
        askChunks(s, party, side, batch),
        Promise.all(ahead.map((p) => openWithHashes(s, party, side, p))),
      ]),
    )
    for (const [k, p] of ahead.entries()) s.ahead.set(p, { a: answers.a[1][k]!, b: answers.b[1][k]! })
    const values = { a: answers.a[0], b: answers.b[0] }
    for (const [k, { name, index }] of batch.entries()) {
      const [x, y] = [values.a[k]!, values.b[k]!]
      if (!chunksAgree(x, y, tol(s, name)!))
        return differ(name, { agree: false, disagreement: { name, chunk: index, diff: chunkDiff(x, y) } })
      if (!left.set(name, left.get(name)! - 1).get(name)) s.agreed.add(name)
    }
  }
  return { agree: true }
}

/**
 * The next probe a straddle is likely to lead to: honest drift leaves few chunks differing on both
 * grids, a lie that reached a cut most of its chunks. A wrong guess costs a round and a cut unused.
 */
function guessNext(s: Search, names: string[], differing: number, next: Next): number[] {
  const chunks = names.reduce((n, name) => n + s.hashes.a.get(name)!.exact.length, 0)
  const p = differing * 4 > chunks ? next.differ : next.agree
  return p === undefined ? [] : [p]
}

/** One side's chunks of `batch`, each checked against its chunk hashes; values in batch order. */
async function askChunks(s: Search, party: CutParty, side: Side, batch: Chunk[]): Promise<TensorData[]> {
  const byName = new Map<string, number[]>()
  for (const [k, c] of batch.entries()) byName.set(c.name, [...(byName.get(c.name) ?? []), k])
  const values: TensorData[] = []
  // One question holds at most DISPUTE_LIMITS.indices chunks; a batch may need several.
  const questions = [...byName].flatMap(([name, at]) =>
    Array.from({ length: Math.ceil(at.length / DISPUTE_LIMITS.indices) }, (_, q) => {
      const part = at.slice(q * DISPUTE_LIMITS.indices, (q + 1) * DISPUTE_LIMITS.indices)
      return [name, part] as [string, number[]]
    }),
  )
  const ask = async ([name, at]: [string, number[]]) => {
    const indices = at.map((k) => batch[k]!.index)
    const got = await party.chunks(name, indices)
    checkAnswer(Array.isArray(got) && got.length === at.length, 'chunks')
    const h = s.hashes[side].get(name)!
    const check = async (k: number, j: number) => {
      values[k] = await checkChunk(h, indices[j]!, got[j]!, tol(s, name))
    }
    await Promise.all(at.map(check))
  }
  await Promise.all(questions.map(ask))
  return values
}

/** What cut -1 must hold: the commitments of the job's inputs, which must be the job's. */
async function inputCommitments(s: Search, inputs: NamedTensors): Promise<OutputCommitment[]> {
  const input = jobOf(s.o, 'a').input
  const mismatch = !s.o.inputsChecked && !(await tensorsCid(inputs)).equals(input)
  if (mismatch || !jobOf(s.o, 'b').input.equals(input))
    throw new InvalidOptionError(`the inputs given are not the job's ${input}`)
  const commit = async (name: string) => {
    const t = inputs[name]
    if (!t) throw new InvalidOptionError(`the inputs given lack '${name}'`)
    return (await tensorCommitment(name, t, tensorRule(s.o.plan, s.o.rules, name))).output
  }
  return Promise.all(cutAt(s.cp, -1).map(commit))
}

/**
 * Cut -1 is the job's inputs, never a tolerance matter. A side whose cut is not them is blamed
 * (DisputeProofError). Without the inputs, cuts that differ prove no one lied: InvalidOptionError
 * blamed on both, as for a transport failure.
 */
function checkInputs(lo: Pair<SignedCut>, expected?: OutputCommitment[]): void {
  const matches = (cut: SignedCut, want: OutputCommitment[]) =>
    cut.body.tensors.every((t, i) => sameCommitment(t, want[i]!))
  if (!expected) {
    if (matches(lo.a, lo.b.body.tensors)) return
    throw blame(new InvalidOptionError("the cuts at -1 differ, and the job's inputs are not given"), 'both')
  }
  const wrong = (['a', 'b'] as const).filter((side) => !matches(lo[side], expected))
  const err = new DisputeProofError("the cut at -1 does not commit to the job's inputs")
  if (wrong.length) throw blame(err, wrong.length === 2 ? 'both' : wrong[0]!)
}

/**
 * Finds the leaf where two parties' cuts go from agreeing to differing. A failed question throws,
 * blamed on its side (a Dispute* name proves a lie); outputs that agree throw NoDivergenceError.
 */
export async function bisectCuts(o: BisectCutsOptions): Promise<CutDivergence> {
  const n = o.plan.leaves.length
  const cp = cutPlan(o.plan)
  const s: Search = {
    o,
    cp,
    ask: asker<CutParty>(o.a, o.b, o.signal),
    shown: { a: new Map(), b: new Map() },
    hashes: { a: new Map(), b: new Map() },
    asked: { a: new Set(), b: new Set() },
    inputs: new Set(cutAt(cp, -1)),
    agreed: new Set(),
    differs: new Map(),
    straddles: 0,
    ahead: new Map(),
  }
  const expected = o.inputs && (await inputCommitments(s, o.inputs))
  const last = (party: CutParty, side: Side) => openWithHashes(s, party, side, n - 1, o.last?.[side])
  let search = startSearch(n)
  // The first probe does not depend on the ends: it goes with them (wasted only if the outputs agree).
  const first = nextProbe(search.lo, search.hi)
  const probe = (party: CutParty, side: Side) =>
    first === undefined ? undefined : openWithHashes(s, party, side, first)
  const ends = await s.ask.round((party, side) =>
    Promise.all([openOne(s, party, side, -1), last(party, side), probe(party, side)]),
  )
  let lo: Pair<SignedCut> = { a: ends.a[0], b: ends.b[0] }
  let hi: Pair<SignedCut> = { a: ends.a[1], b: ends.b[1] }
  checkInputs(lo, expected)
  let at = await verdict(s, hi)
  if (at.agree) throw new NoDivergenceError('the outputs agree under the rules')
  if (first !== undefined) s.ahead.set(first, { a: ends.a[2]!, b: ends.b[2]! })
  for (let p = nextProbe(search.lo, search.hi); p !== undefined; p = nextProbe(search.lo, search.hi)) {
    const cuts = s.ahead.get(p) ?? (await s.ask.round((party, side) => openWithHashes(s, party, side, p)))
    s.ahead.clear()
    const v = await verdict(s, cuts, { agree: nextProbe(p, search.hi), differ: nextProbe(search.lo, p) })
    search = advance(search, v.agree)
    if (v.agree) lo = cuts
    else [hi, at] = [cuts, v]
  }
  const d: CutDivergence = {
    leaf: search.hi,
    node: o.plan.leaves[search.hi]!,
    rounds: s.ask.rounds,
    probes: search.rounds,
    straddles: s.straddles,
    cuts: { lo, hi },
  }
  if (at.disagreement) d.disagreement = at.disagreement
  const sized = (side: Side) =>
    Object.fromEntries(
      hi[side].body.tensors.flatMap(({ name }) => {
        const h = s.hashes[side].get(name)
        return h ? [[name, elementCount(h.dims) * BYTES_PER_ELEMENT[h.dtype]] as const] : []
      }),
    )
  d.hiBytes = { a: sized('a'), b: sized('b') }
  await proven(s, [lo, hi])
  return d
}

/** Verifies each side's signatures on `cuts` (the ends were at once); DisputeProofError blamed on the signer. */
async function proven(s: Search, cuts: Pair<SignedCut>[]): Promise<void> {
  const ends = [-1, s.cp.size - 1]
  const check = async (side: Side) => {
    for (const c of cuts)
      if (!ends.includes(c[side].body.position)) await verifyCut(c[side], s.o.workers[side])
  }
  const [a, b] = await Promise.allSettled([check('a'), check('b')])
  const failed = (
    [
      ['a', a],
      ['b', b],
    ] as const
  ).filter(([, r]) => r.status === 'rejected')
  const first = failed[0]?.[1] as PromiseRejectedResult | undefined
  if (first) throw blame(first.reason, failed.length === 2 ? 'both' : failed[0]![0])
}
