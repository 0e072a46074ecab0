/**
 * Dispute records over cuts (v2): what refereeCuts settled, as dag-cbor. Each side's two signed cuts
 * around the diverging leaf bind what it said: its inputs must hash to its cut lo, its claimed
 * outputs to its cut hi. Without the model anyone can check who signed what about which job
 * (checkCutRecordSignatures); with the plan, the evidence and judgements too (verifyCutRecord); with
 * `run`, the node is recomputed, which alone proves 'wrong-output' or 'drift' (and a drift's closer
 * side). bad-commitment and bad-answer rest on answers the parties did not sign, so they are never
 * proven.
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { CID } from 'multiformats/cid'
import { modelCid } from '../shared/cid.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { type EncodedTensors, encodeTensors } from '../shared/tensor-codec.ts'
import type { Pair, Side } from './bisect.ts'
import type { CutDivergence } from './bisect-cuts.ts'
import { provenBy, type Rerun } from './closer.ts'
import {
  type DisputePlan,
  type DisputeRules,
  exactHash,
  gridsAgree,
  leafNode,
  type NodeRule,
} from './commit.ts'
import { type CutBody, compareCuts, openCut, openSignedCut, rulesDigest } from './cut-commit.ts'
import { cutAt, cutPlan } from './cuts.ts'
import { sameBytes } from './merkle.ts'
import {
  checkCloser,
  checkJudgement,
  confirmByRun,
  DISPUTE_RECORD_KIND,
  defined,
  type Evidence,
  invalid,
  isObject,
  JUDGEMENTS,
  judgedSide,
  type RecordCheck,
  recordHead,
  tensorsOf,
  VERDICTS,
  type VerifyRecordOptions,
} from './record.ts'
import { type Judgement, type JudgingRules, jobInputsOf, type Verdict, verdictOf } from './referee.ts'
import {
  type CutSettlement,
  type CutsAround,
  claimedOutputs,
  cutProblem,
  leafInputs,
} from './referee-cuts.ts'

export interface CutRecordSide {
  /** This side's peer id: the signer of its cuts. */
  worker: string
  /** Its signed cut at leaf - 1 (dag-cbor `{ body, sig }`). */
  lo: Uint8Array
  /** Its signed cut at leaf. */
  hi: Uint8Array
  judged: Judgement
  reason?: string
  inputs?: EncodedTensors
  outputs?: EncodedTensors
  referee?: Uint8Array[]
  refereeOutputs?: EncodedTensors
}

export interface CutDisputeRecord {
  kind: typeof DISPUTE_RECORD_KIND
  v: 2
  /** CID of the model disputed. */
  model: string
  rules: DisputeRules
  compare?: NodeRule
  /** The diverging leaf's position: the sides agree on the cut before it and differ on its own. */
  leaf: number
  node: { index: number; opType: string; name: string }
  /** Rounds of the search (bisectCuts) and of the referee. */
  rounds: number
  refereeRounds: number
  probes: number
  straddles: number
  verdict: Verdict
  closer?: Side
  /** The job inputs the node reads. */
  jobInputs: EncodedTensors
  a: CutRecordSide
  b: CutRecordSide
}

export interface BuildCutRecordOptions {
  model: CID | string
  plan: DisputePlan
  rules: DisputeRules
  divergence: CutDivergence
  settlement: CutSettlement
  /** Each side's peer id: the signer of its cuts. */
  workers: Pair<string>
}

export function buildCutRecord(o: BuildCutRecordOptions): CutDisputeRecord {
  const { divergence: d, settlement: s } = o
  const node = leafNode(o.plan, d.leaf)
  const side = (x: Side): CutRecordSide => {
    const j = s[x]
    return {
      worker: o.workers[x],
      lo: d.cuts.lo[x].signed,
      hi: d.cuts.hi[x].signed,
      ...judgedSide(j),
    }
  }
  return {
    kind: DISPUTE_RECORD_KIND,
    v: 2,
    model: o.model.toString(),
    rules: o.rules,
    compare: s.compare,
    leaf: d.leaf,
    node: { index: node.index, opType: node.opType, name: node.name },
    rounds: d.rounds,
    refereeRounds: s.rounds,
    probes: d.probes,
    straddles: d.straddles,
    verdict: s.verdict,
    closer: s.closer,
    jobInputs: encodeTensors(s.jobInputs),
    a: side('a'),
    b: side('b'),
  }
}

export const encodeCutRecord = (r: CutDisputeRecord): Uint8Array => dagCbor.encode(defined(r))

const count = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0
const isSide = (s: unknown) =>
  isObject(s) &&
  typeof s.worker === 'string' &&
  s.lo instanceof Uint8Array &&
  s.hi instanceof Uint8Array &&
  JUDGEMENTS.includes(s.judged as string) &&
  (s.reason === undefined || typeof s.reason === 'string') &&
  (s.referee === undefined || Array.isArray(s.referee))

function decodeCutRecord(bytes: Uint8Array): CutDisputeRecord {
  const r = recordHead(bytes, 2)
  const ok =
    [r.leaf, r.rounds, r.refereeRounds, r.probes, r.straddles].every(count) &&
    isObject(r.node) &&
    Number.isInteger(r.node.index) &&
    typeof r.node.opType === 'string' &&
    VERDICTS.includes(r.verdict as string) &&
    (r.closer === undefined || (r.verdict === 'drift' && (r.closer === 'a' || r.closer === 'b'))) &&
    isObject(r.jobInputs) &&
    [r.a, r.b].every(isSide)
  if (!ok) return invalid('malformed')
  const v = r as unknown as CutDisputeRecord
  if (verdictOf(v.a.judged, v.b.judged) !== v.verdict) invalid(`the judgements do not give '${v.verdict}'`)
  return v
}

/** A side's evidence as tensors (bounded decode). */
interface Shown {
  inputs?: NamedTensors
  outputs?: NamedTensors
  refereeOutputs?: NamedTensors
}
const shownOf = (s: CutRecordSide, label: Side): Shown => ({
  inputs: tensorsOf(s.inputs, `side ${label} inputs`),
  outputs: tensorsOf(s.outputs, `side ${label} outputs`),
  refereeOutputs: tensorsOf(s.refereeOutputs, `side ${label} referee outputs`),
})

const names = (c: CutBody) => c.tensors.map((t) => t.name).join('\n')

/**
 * Each side's two cuts, opened without the plan: signed by its worker, at leaf - 1 and leaf, about
 * one job, the record's model and one input; both sides' cuts hold the same tensors, and differ at hi.
 */
async function openSides(r: CutDisputeRecord): Promise<Pair<CutsAround>> {
  const open = async (side: Side): Promise<CutsAround> => {
    const s = r[side]
    const opened = (signed: Uint8Array) =>
      openSignedCut(signed, s.worker).catch((err: Error) => invalid(`side ${side}'s cut: ${err.message}`))
    const [lo, hi] = [await opened(s.lo), await opened(s.hi)]
    if (lo.position !== r.leaf - 1 || hi.position !== r.leaf)
      invalid(`side ${side}'s cuts are at ${lo.position} and ${hi.position}, not around leaf ${r.leaf}`)
    if (!lo.job.equals(hi.job) || !lo.input.equals(hi.input) || !lo.model.equals(hi.model))
      invalid(`side ${side}'s cuts are about two jobs`)
    if (lo.model.toString() !== r.model) invalid(`side ${side}'s cuts are about model ${lo.model}`)
    return { lo, hi }
  }
  const cuts = { a: await open('a'), b: await open('b') }
  if (!cuts.a.lo.input.equals(cuts.b.lo.input)) invalid('the sides ran different inputs')
  if (names(cuts.a.lo) !== names(cuts.b.lo) || names(cuts.a.hi) !== names(cuts.b.hi))
    invalid('the sides cut different tensors')
  if (cuts.a.hi.tensors.every((t, i) => sameBytes(t.exact, cuts.b.hi.tensors[i]!.exact)))
    invalid('the two sides do not differ at that leaf')
  return cuts
}

/**
 * Without the plan: every cut signed by its side's worker about that side's job in `expect.jobs`,
 * the model and input given, at leaf - 1 and leaf; the verdict follows from the judgements; tensors
 * within bounds. What a record's verifier can check before it holds the model.
 */
export async function checkCutRecordSignatures(
  bytes: Uint8Array,
  expect: { model: CID; input: CID; jobs: Pair<CID> },
): Promise<{ verdict: Verdict; closer?: Side; workers: Pair<string>; leaf: number }> {
  const r = decodeCutRecord(bytes)
  if (r.model !== expect.model.toString())
    invalid(`the record is about model ${r.model}, not ${expect.model}`)
  const cuts = await openSides(r)
  const rules = await rulesDigest(r.rules)
  for (const side of ['a', 'b'] as const) {
    // Each side signed the rules it was asked under: the record may not claim others.
    if (![cuts[side].lo, cuts[side].hi].every((c) => sameBytes(c.rules, rules)))
      invalid(`side ${side}'s cuts were made under other rules than the record's`)
    const { job, input } = cuts[side].lo
    if (!job.equals(expect.jobs[side]))
      invalid(`side ${side}'s cuts are about job ${job}, not ${expect.jobs[side]}`)
    if (!input.equals(expect.input))
      invalid(`side ${side}'s cuts are about input ${input}, not ${expect.input}`)
    shownOf(r[side], side)
  }
  tensorsOf(r.jobInputs, 'job inputs')
  const workers = { a: r.a.worker, b: r.b.worker }
  return { verdict: r.verdict, ...(r.closer ? { closer: r.closer } : {}), workers, leaf: r.leaf }
}

/**
 * With the plan: each cut holds the tensors cutAt names with the hashes their rules call for; the lo
 * cuts do not differ (under a tolerance, tensors that straddle cannot be re-proven to agree from
 * hashes: the search settled them by chunks); the hi cuts differ on leaf hi's outputs. Leaf hi reads
 * only cut lo, so it alone turned agreement into disagreement.
 */
async function checkCuts(r: CutDisputeRecord, plan: DisputePlan, cuts: Pair<CutsAround>): Promise<void> {
  const cp = cutPlan(plan)
  for (const side of ['a', 'b'] as const) {
    const { job, model, input } = cuts[side].lo
    for (const [at, position] of [
      ['lo', r.leaf - 1],
      ['hi', r.leaf],
    ] as const) {
      const expect = {
        worker: r[side].worker,
        job,
        model,
        input,
        position,
        names: cutAt(cp, position),
        plan,
        rules: r.rules,
      }
      await openCut(r[side][at], expect).catch((err: Error) =>
        invalid(`side ${side}'s cut at ${position}: ${err.message}`),
      )
    }
  }
  if (compareCuts(cuts.a.lo, cuts.b.lo, plan, r.rules) === 'differ')
    invalid(`the sides differ at ${r.leaf - 1}`)
  const [ha, hb] = [claimedOutputs(plan, r.leaf, cuts.a.hi), claimedOutputs(plan, r.leaf, cuts.b.hi)]
  if (ha.every((t, i) => gridsAgree(t, hb[i]!)))
    invalid(`the sides do not differ on leaf ${r.leaf}'s outputs`)
}

/** The job inputs leaf hi reads, exactly those, as both sides' cut lo commits to them. */
async function checkJobInputs(
  r: CutDisputeRecord,
  plan: DisputePlan,
  cuts: Pair<CutsAround>,
): Promise<NamedTensors> {
  const given = tensorsOf(r.jobInputs, 'job inputs') ?? {}
  let read: NamedTensors = {}
  try {
    read = jobInputsOf(plan, r.leaf, given)
  } catch (err) {
    invalid((err as Error).message)
  }
  if (Object.keys(given).length !== Object.keys(read).length)
    invalid('the job inputs are not the ones the node reads')
  for (const [name, t] of Object.entries(read)) {
    const h = await exactHash(t)
    for (const side of ['a', 'b'] as const)
      if (!sameBytes(h, cuts[side].lo.tensors.find((c) => c.name === name)?.exact))
        invalid(`job input '${name}' is not side ${side}'s`)
  }
  return read
}

/** A side's evidence: only tensors the node reads or writes; its judgement follows from it. */
async function checkSide(
  o: JudgingRules,
  r: CutDisputeRecord,
  cuts: CutsAround,
  label: Side,
): Promise<Evidence & Shown> {
  const side = r[label]
  const shown = shownOf(side, label)
  const reads = leafInputs(o.plan, r.leaf)
  const claimed = claimedOutputs(o.plan, r.leaf, cuts.hi)
  const outside = (t: NamedTensors | undefined, known: string[]) =>
    Object.keys(t ?? {}).some((n) => !known.includes(n))
  const outs = claimed.map((t) => t.name)
  if (outside(shown.inputs, reads) || outside(shown.outputs, outs) || outside(shown.refereeOutputs, outs))
    invalid(`side ${label} shows tensors leaf ${r.leaf} does not read or write`)
  const problem = await cutProblem(cuts, shown).catch((err: Error) =>
    invalid(`side ${label}: ${err.message}`),
  )
  const e: Evidence & Shown = { ...shown, judged: side.judged, claimed, referee: side.referee }
  if (['ok', 'wrong-output'].includes(side.judged) && reads.some((n) => !shown.inputs?.[n]))
    invalid(`side ${label} is judged ${side.judged} without the inputs it was judged on`)
  await checkJudgement(o, e, problem, label)
  return e
}

/** Checks a record over cuts against the plan; InvalidDisputeRecordError for anything that does not hold. */
export async function verifyCutRecord(bytes: Uint8Array, opts: VerifyRecordOptions): Promise<RecordCheck> {
  const r = decodeCutRecord(bytes)
  const { plan } = opts
  const model = (opts.model ?? (await modelCid(plan.model.bytes))).toString()
  if (r.model !== model) invalid(`the record is about model ${r.model}, not ${model}`)
  if (r.leaf >= plan.leaves.length) invalid(`no leaf ${r.leaf}`)
  const node = leafNode(plan, r.leaf)
  if (r.node.index !== node.index || r.node.opType !== node.opType) invalid(`leaf ${r.leaf} is not that node`)
  const cuts = await openSides(r)
  await checkCuts(r, plan, cuts)
  const jobInputs = await checkJobInputs(r, plan, cuts)
  const o: JudgingRules = { plan, rules: r.rules, compare: r.compare }
  const ev = { a: await checkSide(o, r, cuts.a, 'a'), b: await checkSide(o, r, cuts.b, 'b') }
  checkCloser(r, ev)
  const judgedByRun = (['a', 'b'] as const).filter((s) => ['ok', 'wrong-output'].includes(r[s].judged))
  const reruns: Rerun[] = []
  if (opts.run)
    for (const s of judgedByRun)
      reruns.push(
        await confirmByRun({ ...o, run: opts.run }, ev[s], node.index, { ...jobInputs, ...ev[s].inputs }),
      )
  const proven = provenBy(r, reruns)
  return { verdict: r.verdict, position: r.leaf, node: node.index, proven, rerun: reruns.length > 0 }
}
