/**
 * Dispute records: what a settled dispute leaves behind, as dag-cbor, for anyone holding the model
 * to check. The proofs tie each side's evidence to the root it signed; a verifier that can run the
 * node (`run`) recomputes it, which alone proves 'wrong-output' or 'drift'. bad-commitment and
 * bad-answer rest on answers the parties did not sign, so they are never proven.
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { CID } from 'multiformats/cid'
import { modelCid } from '../shared/cid.ts'
import { InvalidDisputeRecordError } from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { decodeTensors, type EncodedTensors, encodeTensors } from '../shared/tensor-codec.ts'
import { checkCommitment, type Divergence, type Side } from './bisect.ts'
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
  producers,
  tensorRule,
  tensorsAgree,
} from './commit.ts'
import { sameBytes } from './merkle.ts'
import { singleNodeModel } from './onnx-graph.ts'
import {
  commitmentProblem,
  type Judgement,
  judgingRule,
  type RunNode,
  type Settlement,
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

const encoded = (t?: NamedTensors) => (t ? encodeTensors(t) : undefined)

export function buildDisputeRecord(o: BuildRecordOptions): DisputeRecord {
  const { divergence: d, settlement: s } = o
  const node = leafNode(o.plan, d.position)
  const side = (x: Side): RecordSide => {
    const j = s[x]
    return {
      commitment: d.commitments[x],
      leaf: d.leaves[x],
      producers: j.producers,
      judged: j.judged,
      reason: j.reason,
      inputs: encoded(j.inputs),
      outputs: encoded(j.outputs),
      referee: j.referee,
      refereeOutputs: encoded(j.refereeOutputs),
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
function defined(x: unknown): unknown {
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

const invalid = (why: string): never => {
  throw new InvalidDisputeRecordError(`invalid dispute record: ${why}`)
}
const VERDICTS: readonly string[] = ['a-invalid', 'b-invalid', 'both-invalid', 'drift']
const JUDGEMENTS: readonly string[] = ['ok', 'wrong-output', 'bad-commitment', 'bad-answer']
const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null
const RULE_KINDS: readonly unknown[] = ['exact', 'tolerance', 'argmax', 'topk']
/** Whether `x` looks like a rule: a known kind, finite tolerances, a whole k. */
const isRule = (x: unknown): boolean =>
  isObject(x) &&
  RULE_KINDS.includes(x.kind) &&
  (x.kind !== 'tolerance' || (Number.isFinite(x.atol) && Number.isFinite(x.rtol))) &&
  (x.kind !== 'topk' || Number.isInteger(x.k))
const isRules = (x: unknown): boolean =>
  isObject(x) &&
  isRule(x.job) &&
  isRule(x.node) &&
  ['exact', 'tolerance'].includes((x.node as { kind: string }).kind)

function decodeRecord(bytes: Uint8Array): DisputeRecord {
  let r: unknown
  try {
    r = dagCbor.decode(bytes)
  } catch {
    return invalid('not dag-cbor')
  }
  const ok =
    isObject(r) &&
    r.kind === DISPUTE_RECORD_KIND &&
    r.v === 1 &&
    typeof r.model === 'string' &&
    isRules(r.rules) &&
    (r.compare === undefined || (isRule(r.compare) && (r.compare as { kind: string }).kind !== 'topk')) &&
    Number.isInteger(r.position) &&
    isObject(r.node) &&
    Number.isInteger(r.node.index) &&
    VERDICTS.includes(r.verdict as string) &&
    [r.a, r.b].every(
      (s) => isObject(s) && JUDGEMENTS.includes(s.judged as string) && Array.isArray(s.producers),
    )
  return ok ? (r as unknown as DisputeRecord) : invalid('malformed')
}

const tensorsOf = (t: EncodedTensors | undefined, what: string): NamedTensors | undefined => {
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

/** Whether each claimed output agrees with `recomputed` (by hash or value); undefined where unknown. */
async function agreement(
  c: Ctx,
  side: RecordSide,
  shown: Shown,
  recomputed: (name: string, i: number) => Promise<{ hash: Uint8Array; tensor?: NamedTensors[string] }>,
): Promise<(boolean | undefined)[]> {
  const out: (boolean | undefined)[] = []
  for (const [i, claimed] of side.leaf.leaf.outputs.entries()) {
    const rec = await recomputed(claimed.name, i)
    const rule = judgingRule(tensorRule(c.plan, c.r.rules, claimed.name), c.r.compare)
    if (sameBytes(rec.hash, claimed.exact)) out.push(true)
    else if (rule.kind === 'exact') out.push(false)
    else if (!rec.tensor) out.push(undefined)
    else if (rule.kind === 'topk') out.push(sameBytes(await coarseHash(rec.tensor, rule), claimed.coarse))
    else {
      const claim = shown.outputs?.[claimed.name]
      out.push(claim ? tensorsAgree(claimed.name, rec.tensor, claim, rule) : undefined)
    }
  }
  return out
}

/** Checks that a side's judgement follows from its evidence and the referee's hashes. */
async function checkJudgement(c: Ctx, side: RecordSide, shown: Shown, label: Side): Promise<void> {
  const problem = await commitmentProblem(c.plan, c.r.position, side.leaf, shown)
  if (side.judged === 'bad-answer') return
  if (side.judged === 'bad-commitment') {
    if (!problem) invalid(`side ${label} is judged bad-commitment, but its tensors match its commitment`)
    return
  }
  if (problem) invalid(`side ${label} is judged ${side.judged}, but ${problem}`)
  const hashes = side.referee
  const n = side.leaf.leaf.outputs.length
  const hashShaped = (h: unknown) => h instanceof Uint8Array && h.byteLength === 32
  if (!Array.isArray(hashes) || hashes.length !== n || !hashes.every(hashShaped))
    return invalid(`side ${label} has no referee hashes`)
  const agrees = await agreement(c, side, shown, async (name, i) => {
    const tensor = shown.refereeOutputs?.[name]
    if (tensor && !sameBytes(await exactHash(tensor), hashes[i]))
      invalid(`side ${label}: referee output '${name}'`)
    return { hash: hashes[i]!, tensor }
  })
  if (agrees.includes(undefined)) invalid(`side ${label} lacks what its judgement was compared on`)
  if (agrees.every(Boolean) !== (side.judged === 'ok'))
    invalid(`side ${label} is not ${side.judged} by its evidence`)
}

/** Recomputes the node on a side's inputs; whether that confirms its judgement (undefined: cannot tell). */
async function rerun(c: Ctx, side: RecordSide, shown: Shown, run: RunNode): Promise<boolean | undefined> {
  const jobInputs = tensorsOf(c.r.jobInputs, 'job inputs') ?? {}
  const feeds = { ...jobInputs, ...shown.inputs }
  const specs = Object.entries(feeds).map(([name, t]) => ({ name, dtype: t.dtype, dims: t.dims }))
  const out = await run(singleNodeModel(c.plan.model, c.r.node.index, specs), feeds)
  const agrees = await agreement(c, side, shown, async (name) => {
    const tensor = out[name]
    return tensor ? { hash: await exactHash(tensor), tensor } : invalid(`the rerun gave no '${name}'`)
  })
  if (agrees.includes(undefined)) return undefined
  return agrees.every(Boolean) === (side.judged === 'ok')
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
  for (const s of ['a', 'b'] as const) await checkJudgement(c, r[s], shown[s], s)
  const judgedByRun = (['a', 'b'] as const).filter((s) => ['ok', 'wrong-output'].includes(r[s].judged))
  const confirmed: (boolean | undefined)[] = []
  if (opts.run) for (const s of judgedByRun) confirmed.push(await rerun(c, r[s], shown[s], opts.run))
  const proven = confirmed.length === 2 && confirmed.every((x) => x === true)
  return {
    verdict: r.verdict,
    position: r.position,
    node: node.index,
    proven,
    rerun: confirmed.length > 0,
  }
}
