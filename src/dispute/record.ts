/**
 * Dispute records: what a settled dispute leaves behind, as dag-cbor, for anyone holding the model
 * to check. The proofs tie each side's evidence to the root it signed; a verifier that can run the
 * node (`run`) recomputes it, which alone proves 'wrong-output' or 'drift' (and a drift's closer
 * side). bad-commitment and bad-answer rest on answers the parties did not sign, so they are never
 * proven.
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { CID } from 'multiformats/cid'
import { modelCid } from '../shared/cid.ts'
import { InvalidDisputeRecordError } from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { decodeTensors, type EncodedTensors, encodeTensors } from '../shared/tensor-codec.ts'
import { checkCommitment, type Divergence, type Pair, type Side } from './bisect.ts'
import { closerOf, distanceOf, provenBy, type Rerun } from './closer.ts'
import {
  type Commitment,
  checkLeaf,
  coarseEqual,
  coarseHash,
  type DisputePlan,
  type DisputeRules,
  exactHash,
  type LeafAnswer,
  leafNode,
  type NodeRule,
  type OutputCommitment,
  producers,
  tensorRule,
  tensorsAgree,
} from './commit.ts'
import { sameBytes } from './merkle.ts'
import {
  commitmentProblem,
  type Judgement,
  type JudgingRules,
  judgeOutputs,
  judgingRule,
  nodeRunner,
  type RunNode,
  type Settlement,
  type SideSettlement,
  type Verdict,
  verdictOf,
} from './referee.ts'

export const DISPUTE_RECORD_KIND = 'peer-compute/dispute-record'

export interface RecordSide {
  commitment: Commitment
  leaf: LeafAnswer
  producers: LeafAnswer[]
  judged: Judgement
  reason?: string
  inputs?: EncodedTensors
  outputs?: EncodedTensors
  referee?: Uint8Array[]
  refereeOutputs?: EncodedTensors
}

export interface DisputeRecord {
  kind: typeof DISPUTE_RECORD_KIND
  v: 1
  /** CID of the model disputed. */
  model: string
  rules: DisputeRules
  compare?: NodeRule
  position: number
  node: { index: number; opType: string; name: string }
  rounds: number
  refereeRounds: number
  straddles: number
  verdict: Verdict
  closer?: Side
  /** The job inputs the node reads. */
  jobInputs: EncodedTensors
  a: RecordSide
  b: RecordSide
}

export interface BuildRecordOptions {
  model: CID | string
  plan: DisputePlan
  rules: DisputeRules
  divergence: Divergence
  settlement: Settlement
}

export const encoded = (t?: NamedTensors) => (t ? encodeTensors(t) : undefined)

/** A judged side as a record holds it: its judgement and evidence, tensors encoded. */
export const judgedSide = (j: Omit<SideSettlement, 'producers'>) => ({
  judged: j.judged,
  reason: j.reason,
  inputs: encoded(j.inputs),
  outputs: encoded(j.outputs),
  referee: j.referee,
  refereeOutputs: encoded(j.refereeOutputs),
})

export function buildDisputeRecord(o: BuildRecordOptions): DisputeRecord {
  const { divergence: d, settlement: s } = o
  const node = leafNode(o.plan, d.position)
  const side = (x: Side): RecordSide => {
    const j = s[x]
    return {
      commitment: d.commitments[x],
      leaf: d.leaves[x],
      producers: j.producers,
      ...judgedSide(j),
    }
  }
  return {
    kind: DISPUTE_RECORD_KIND,
    v: 1,
    model: o.model.toString(),
    rules: o.rules,
    compare: s.compare,
    position: d.position,
    node: { index: node.index, opType: node.opType, name: node.name },
    rounds: d.rounds,
    refereeRounds: s.rounds,
    straddles: d.straddles,
    verdict: s.verdict,
    closer: s.closer,
    jobInputs: encodeTensors(s.jobInputs),
    a: side('a'),
    b: side('b'),
  }
}

/** A copy without undefined fields, which dag-cbor refuses. */
export function defined(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(defined)
  if (
    x === null ||
    typeof x !== 'object' ||
    ArrayBuffer.isView(x) ||
    Object.getPrototypeOf(x) !== Object.prototype
  )
    return x
  return Object.fromEntries(
    Object.entries(x)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [k, defined(v)]),
  )
}

export const encodeDisputeRecord = (r: DisputeRecord): Uint8Array => dagCbor.encode(defined(r))

export interface RecordCheck {
  verdict: Verdict
  position: number
  /** Node index. */
  node: number
  /** Whether the verdict stands on the verifier's own recomputation. */
  proven: boolean
  /** Whether the node was recomputed (`run` given). */
  rerun: boolean
}

export interface VerifyRecordOptions {
  plan: DisputePlan
  /** The model's CID, if the verifier knows it (else it is computed from the plan). */
  model?: CID | string
  run?: RunNode
}

export const invalid = (why: string): never => {
  throw new InvalidDisputeRecordError(`invalid dispute record: ${why}`)
}
export const VERDICTS: readonly string[] = ['a-invalid', 'b-invalid', 'both-invalid', 'drift']
export const JUDGEMENTS: readonly string[] = ['ok', 'wrong-output', 'bad-commitment', 'bad-answer']
export const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null
const RULE_KINDS: readonly unknown[] = ['exact', 'tolerance', 'argmax', 'topk']
/** Whether `x` looks like a rule: a known kind, finite tolerances, a whole k. */
export const isRule = (x: unknown): boolean =>
  isObject(x) &&
  RULE_KINDS.includes(x.kind) &&
  (x.kind !== 'tolerance' || (Number.isFinite(x.atol) && Number.isFinite(x.rtol))) &&
  (x.kind !== 'topk' || Number.isInteger(x.k))
export const isRules = (x: unknown): boolean =>
  isObject(x) &&
  isRule(x.job) &&
  isRule(x.node) &&
  ['exact', 'tolerance'].includes((x.node as { kind: string }).kind)

/** A dispute record of version `v` from bytes, its common head checked (kind, model, rules, compare). */
export function recordHead(bytes: Uint8Array, v: 1 | 2): Record<string, unknown> {
  let r: unknown
  try {
    r = dagCbor.decode(bytes)
  } catch {
    return invalid('not dag-cbor')
  }
  const ok =
    isObject(r) &&
    r.kind === DISPUTE_RECORD_KIND &&
    r.v === v &&
    typeof r.model === 'string' &&
    isRules(r.rules) &&
    (r.compare === undefined || (isRule(r.compare) && (r.compare as { kind: string }).kind !== 'topk'))
  return ok ? (r as Record<string, unknown>) : invalid('malformed')
}

function decodeRecord(bytes: Uint8Array): DisputeRecord {
  const r = recordHead(bytes, 1)
  const ok =
    Number.isInteger(r.position) &&
    isObject(r.node) &&
    Number.isInteger(r.node.index) &&
    VERDICTS.includes(r.verdict as string) &&
    [r.a, r.b].every(
      (s) => isObject(s) && JUDGEMENTS.includes(s.judged as string) && Array.isArray(s.producers),
    )
  return ok ? (r as unknown as DisputeRecord) : invalid('malformed')
}

export const tensorsOf = (t: EncodedTensors | undefined, what: string): NamedTensors | undefined => {
  if (t === undefined) return undefined
  try {
    return decodeTensors(t, { maxElements: 1 << 26 })
  } catch (err) {
    return invalid(`${what}: ${(err as Error).message}`)
  }
}

interface Ctx {
  r: DisputeRecord
  plan: DisputePlan
}

/** A side's evidence as tensors. */
interface Shown {
  producers: LeafAnswer[]
  inputs?: NamedTensors
  outputs?: NamedTensors
  refereeOutputs?: NamedTensors
}

/** Checks one side's proofs against its commitment; returns its evidence decoded. */
async function checkProofs(c: Ctx, side: RecordSide, label: Side): Promise<Shown> {
  const { r, plan } = c
  const prods = producers(plan, r.position)
  try {
    await checkCommitment(side.commitment, plan.leaves.length)
    await checkLeaf(plan, r.rules, side.commitment, r.position, side.leaf)
    if (side.judged !== 'bad-answer' || side.producers.length) {
      if (side.producers.length !== prods.length)
        invalid(`side ${label} proves ${side.producers.length} producers`)
      for (const [i, p] of prods.entries())
        await checkLeaf(plan, r.rules, side.commitment, p, side.producers[i]!)
    }
  } catch (err) {
    if ((err as Error).name === 'InvalidDisputeRecordError') throw err
    invalid(`side ${label}: ${(err as Error).message}`)
  }
  return {
    producers: side.producers,
    inputs: tensorsOf(side.inputs, `side ${label} inputs`),
    outputs: tensorsOf(side.outputs, `side ${label} outputs`),
    refereeOutputs: tensorsOf(side.refereeOutputs, `side ${label} referee outputs`),
  }
}

/** What a side's judgement rests on: its claimed outputs (in the referee's order) and the evidence on them. */
export interface Evidence {
  judged: Judgement
  claimed: OutputCommitment[]
  referee?: Uint8Array[]
  outputs?: NamedTensors
  refereeOutputs?: NamedTensors
}
type Recomputed = (name: string, i: number) => Promise<{ hash: Uint8Array; tensor?: NamedTensors[string] }>

/** Whether each claimed output agrees with `recomputed` (by hash or value); undefined where unknown. */
async function agreement(
  o: JudgingRules,
  e: Evidence,
  recomputed: Recomputed,
): Promise<(boolean | undefined)[]> {
  const out: (boolean | undefined)[] = []
  for (const [i, claimed] of e.claimed.entries()) {
    const rec = await recomputed(claimed.name, i)
    const rule = judgingRule(tensorRule(o.plan, o.rules, claimed.name), o.compare)
    if (sameBytes(rec.hash, claimed.exact)) out.push(true)
    else if (rule.kind === 'exact') out.push(false)
    else if (!rec.tensor) out.push(undefined)
    else if (rule.kind === 'topk') out.push(sameBytes(await coarseHash(rec.tensor, rule), claimed.coarse))
    else {
      const claim = e.outputs?.[claimed.name]
      out.push(claim ? tensorsAgree(claimed.name, rec.tensor, claim, rule) : undefined)
    }
  }
  return out
}

/**
 * Checks that a side's judgement follows from `problem` (why its tensors are not the ones it
 * committed to, if they are not), its evidence and the referee's hashes.
 */
export async function checkJudgement(o: JudgingRules, e: Evidence, problem: string | undefined, label: Side) {
  if (e.judged === 'bad-answer') return
  if (e.judged === 'bad-commitment') {
    if (!problem) invalid(`side ${label} is judged bad-commitment, but its tensors match its commitment`)
    return
  }
  if (problem) invalid(`side ${label} is judged ${e.judged}, but ${problem}`)
  const hashes = e.referee
  const hashShaped = (h: unknown) => h instanceof Uint8Array && h.byteLength === 32
  if (!Array.isArray(hashes) || hashes.length !== e.claimed.length || !hashes.every(hashShaped))
    return invalid(`side ${label} has no referee hashes`)
  const agrees = await agreement(o, e, async (name, i) => {
    const tensor = e.refereeOutputs?.[name]
    if (tensor && !sameBytes(await exactHash(tensor), hashes[i]))
      invalid(`side ${label}: referee output '${name}'`)
    return { hash: hashes[i]!, tensor }
  })
  if (agrees.includes(undefined)) invalid(`side ${label} lacks what its judgement was compared on`)
  if (agrees.every(Boolean) !== (e.judged === 'ok'))
    invalid(`side ${label} is not ${e.judged} by its evidence`)
}

/** Under drift, the record's closer is the side its evidence puts nearer; else there is none. */
export function checkCloser(r: { verdict: Verdict; closer?: Side }, ev: Pair<Evidence>): void {
  const closer = r.verdict === 'drift' ? closerOf(distanceOf(ev.a), distanceOf(ev.b)) : undefined
  if (closer !== r.closer) invalid('the closer side is not the nearer one')
}

/** Recomputes node `index` on `feeds` and judges the side's claims on it as the referee does. */
export async function confirmByRun(
  o: JudgingRules & { run: RunNode },
  e: Evidence,
  index: number,
  feeds: NamedTensors,
): Promise<Rerun> {
  const out = await nodeRunner(o, index, feeds).recompute('', {})
  for (const { name } of e.claimed) if (!out[name]) invalid(`the rerun gave no '${name}'`)
  const j = await judgeOutputs(o, e.claimed, e.outputs, out)
  if (j === 'outputs') return {}
  return { confirms: (j.judged === 'ok') === (e.judged === 'ok'), distance: j.distance }
}

const rulesOf = (c: Ctx): JudgingRules => ({ plan: c.plan, rules: c.r.rules, compare: c.r.compare })
const evidenceOf = (side: RecordSide, shown: Shown): Evidence => ({
  judged: side.judged,
  claimed: side.leaf.leaf.outputs,
  referee: side.referee,
  outputs: shown.outputs,
  refereeOutputs: shown.refereeOutputs,
})

/** Recomputes the node on a side's inputs, judged as the referee does. */
function rerun(c: Ctx, side: RecordSide, shown: Shown, run: RunNode): Promise<Rerun> {
  const jobInputs = tensorsOf(c.r.jobInputs, 'job inputs') ?? {}
  const feeds = { ...jobInputs, ...shown.inputs }
  return confirmByRun({ ...rulesOf(c), run }, evidenceOf(side, shown), c.r.node.index, feeds)
}

/** Checks a dispute record against the plan; InvalidDisputeRecordError for anything that does not hold. */
export async function verifyDisputeRecord(
  bytes: Uint8Array,
  opts: VerifyRecordOptions,
): Promise<RecordCheck> {
  const r = decodeRecord(bytes)
  const { plan } = opts
  const model = (opts.model ?? (await modelCid(plan.model.bytes))).toString()
  if (r.model !== model) invalid(`the record is about model ${r.model}, not ${model}`)
  if (r.position < 0 || r.position >= plan.leaves.length) invalid(`no leaf ${r.position}`)
  const node = leafNode(plan, r.position)
  if (r.node.index !== node.index || r.node.opType !== node.opType)
    invalid(`leaf ${r.position} is not that node`)
  if (verdictOf(r.a.judged, r.b.judged) !== r.verdict) invalid(`the judgements do not give '${r.verdict}'`)
  const c: Ctx = { r, plan }
  const shown = { a: await checkProofs(c, r.a, 'a'), b: await checkProofs(c, r.b, 'b') }
  if (sameBytes(r.a.commitment.root, r.b.commitment.root) || coarseEqual(r.a.leaf.leaf, r.b.leaf.leaf))
    invalid('the two sides do not differ at that leaf')
  const ev = { a: evidenceOf(r.a, shown.a), b: evidenceOf(r.b, shown.b) }
  for (const s of ['a', 'b'] as const) {
    const problem = await commitmentProblem(c.plan, r.position, r[s].leaf, shown[s])
    await checkJudgement(rulesOf(c), ev[s], problem, s)
  }
  checkCloser(r, ev)
  const judgedByRun = (['a', 'b'] as const).filter((s) => ['ok', 'wrong-output'].includes(r[s].judged))
  const reruns: Rerun[] = []
  if (opts.run) for (const s of judgedByRun) reruns.push(await rerun(c, r[s], shown[s], opts.run))
  const proven = provenBy(r, reruns)
  return { verdict: r.verdict, position: r.position, node: node.index, proven, rerun: reruns.length > 0 }
}
