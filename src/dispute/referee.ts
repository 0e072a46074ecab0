/**
 * The referee: recompute the node where two traces part, once on each side's own inputs, and judge
 * each side's claimed outputs against that. A side's inputs must be the tensors it committed to
 * (its producers' leaves prove their hashes); outputs are compared under their rule, loosened to
 * the measured kernel drift (refereeRule), so an honest side is never judged wrong.
 */
import { DisputeAnswerError, InferenceError, InvalidTensorError } from '../shared/errors.ts'
import type { NamedTensors, Tensor } from '../shared/tensor.ts'
import {
  asker,
  blame,
  type Divergence,
  isDisputeError,
  type Pair,
  type Settled,
  type Side,
} from './bisect.ts'
import { closerOf, distance } from './closer.ts'
import {
  checkLeaf,
  coarseHash,
  type DisputePlan,
  type DisputeRules,
  exactHash,
  type LeafAnswer,
  leafNode,
  leafOutputs,
  type NodeRule,
  type OutputCommitment,
  producers,
  refereeRule,
  type TensorRule,
  tensorRule,
  tensorsAgree,
} from './commit.ts'
import { sameBytes } from './merkle.ts'
import { singleNodeModel } from './onnx-graph.ts'
import type { DisputeParty } from './party.ts'

export type Verdict = 'a-invalid' | 'b-invalid' | 'both-invalid' | 'drift'
export type Judgement = 'ok' | 'wrong-output' | 'bad-commitment' | 'bad-answer'
/** Runs a model on inputs (the referee's runtime: a WASM worker in the page, onnxruntime-node in tests). */
export type RunNode = (model: Uint8Array, inputs: NamedTensors) => Promise<NamedTensors>

export interface SideSettlement {
  judged: Judgement
  reason?: string
  /** Proofs of the leaves whose outputs the node reads, in producers() order. */
  producers: LeafAnswer[]
  /** The node outputs this side fed the node (job inputs are the job's). */
  inputs?: NamedTensors
  /** Its claimed outputs, where they were compared by value. */
  outputs?: NamedTensors
  /** Exact hashes of the referee's recomputation, one per output. */
  referee?: Uint8Array[]
  /** The recomputation, where it differed from the claim in any bit (non-exact rules). */
  refereeOutputs?: NamedTensors
  /** Largest |claimed - recomputed| (0 when identical; unknown when compared by hash only). */
  distance?: number
}

export interface Settlement {
  verdict: Verdict
  a: SideSettlement
  b: SideSettlement
  /** Under 'drift': the side whose claim is nearer its own recomputation. */
  closer?: Side
  /** The rule given as `compare`, if any. */
  compare?: NodeRule
  /** The job inputs the node reads (what a record needs to rerun it). */
  jobInputs: NamedTensors
  rounds: number
  refereeRuns: number
}

export interface RefereeOptions {
  plan: DisputePlan
  rules: DisputeRules
  divergence: Divergence
  a: DisputeParty
  b: DisputeParty
  /** The job's inputs (the requester has them). */
  jobInputs: NamedTensors
  run: RunNode
  /** Compare tolerance-ruled outputs under this instead of refereeRule. */
  compare?: NodeRule
  signal?: AbortSignal
}

export function verdictOf(a: Judgement, b: Judgement): Verdict {
  if (a !== 'ok' && b !== 'ok') return 'both-invalid'
  if (a !== 'ok') return 'a-invalid'
  return b !== 'ok' ? 'b-invalid' : 'drift'
}

/** The rule a recomputed output is compared with its claim under. */
export const judgingRule = (rule: TensorRule, compare?: NodeRule): TensorRule =>
  rule.kind === 'tolerance' ? (compare ?? refereeRule(rule)) : rule

/** Job inputs that leaf `position` reads. */
export function jobInputsOf(plan: DisputePlan, position: number, jobInputs: NamedTensors): NamedTensors {
  const out: NamedTensors = {}
  for (const { name, source } of leafNode(plan, position).inputs) {
    if (source.kind !== 'input') continue
    const t = jobInputs[name]
    if (!t) throw new InvalidTensorError(`the job has no input '${name}'`)
    out[name] = t
  }
  return out
}

/** The node outputs leaf `position` reads, with the leaf (by producers() index) that made each. */
export function nodeInputs(plan: DisputePlan, position: number): { name: string; producer: number }[] {
  const prods = producers(plan, position)
  const seen = new Set<string>()
  return leafNode(plan, position)
    .inputs.filter((i) => i.source.kind === 'node' && !seen.has(i.name) && seen.add(i.name))
    .map((i) => ({ name: i.name, producer: prods.indexOf(plan.producer[i.name]!) }))
}

/** Exact hash of a tensor a party sent; DisputeAnswerError if it is no tensor. */
export async function sentHash(t: Tensor): Promise<Uint8Array> {
  try {
    return await exactHash(t)
  } catch (err) {
    throw new DisputeAnswerError(`a malformed tensor: ${(err as Error).message}`)
  }
}

/** The exact hash a side committed to for input `name` (from its producers' leaves). */
const committedInput = (plan: DisputePlan, position: number, producers: LeafAnswer[], name: string) => {
  const at = nodeInputs(plan, position).find((i) => i.name === name)!
  return producers[at.producer]?.leaf.outputs.find((o) => o.name === name)?.exact
}

/** Why a side's tensors are not the ones it committed to, if they are not. */
export async function commitmentProblem(
  plan: DisputePlan,
  position: number,
  leaf: LeafAnswer,
  ev: { producers: LeafAnswer[]; inputs?: NamedTensors; outputs?: NamedTensors },
): Promise<string | undefined> {
  for (const { name } of nodeInputs(plan, position)) {
    const t = ev.inputs?.[name]
    if (!t) return `input '${name}' is missing`
    if (!sameBytes(await sentHash(t), committedInput(plan, position, ev.producers, name)))
      return `input '${name}' is not the tensor it committed to`
  }
  for (const o of leaf.leaf.outputs) {
    const t = ev.outputs?.[o.name]
    if (t && !sameBytes(await sentHash(t), o.exact))
      return `output '${o.name}' is not the tensor it committed to`
  }
  return undefined
}

/** One side's case as it is built up over the referee's rounds. */
interface Case {
  side: Side
  leaf: LeafAnswer
  producers: LeafAnswer[]
  inputs: NamedTensors
  /** Inputs still to ask this side for (the other side's copy did not do). */
  missing: string[]
  outputs?: NamedTensors
  settled?: SideSettlement
}

/** A side's failed answer as its judgement: a tensor off its commitment, or a malformed answer. */
export const failure = (err: Error): { judged: Judgement; reason: string } => ({
  judged: err.name === 'DisputeCommitmentError' ? 'bad-commitment' : 'bad-answer',
  reason: `${err.name}: ${err.message}`,
})
const failed = (err: Error, c: Case): SideSettlement => ({ ...failure(err), producers: c.producers })

/** The tensors `names` from a side's producers. */
async function fetchInputs(o: RefereeOptions, party: DisputeParty, names: string[]): Promise<NamedTensors> {
  const { plan, divergence: d } = o
  const prods = producers(plan, d.position)
  const wanted = nodeInputs(plan, d.position).filter((i) => names.includes(i.name))
  const from = [...new Set(wanted.map((i) => i.producer))]
  const got = await Promise.all(from.map((k) => party.outputs(prods[k]!)))
  const out: NamedTensors = {}
  for (const { name, producer } of wanted) {
    const t = got[from.indexOf(producer)]?.[name]
    if (!t) throw new DisputeAnswerError(`no tensor '${name}' among leaf ${prods[producer]}'s outputs`)
    out[name] = t
  }
  return out
}

/** Round one: each side's producer leaves (checked); side a's input tensors, which b may share. */
async function firstRound(o: RefereeOptions, party: DisputeParty, side: Side) {
  const { plan, rules, divergence: d } = o
  const prods = producers(plan, d.position)
  const names = side === 'a' ? nodeInputs(plan, d.position).map((i) => i.name) : []
  const [leaves, inputs] = await Promise.all([
    Promise.all(prods.map((p) => party.leaf(p))),
    fetchInputs(o, party, names),
  ])
  for (const [i, p] of prods.entries()) await checkLeaf(plan, rules, d.commitments[side], p, leaves[i]!)
  return { leaves, inputs }
}

/** A bad-commitment (or bad-answer, for a malformed tensor) settlement if a side's tensors are not its own. */
async function badCase(o: RefereeOptions, c: Case): Promise<SideSettlement | undefined> {
  try {
    const problem = await commitmentProblem(o.plan, o.divergence.position, c.leaf, c)
    if (!problem) return undefined
    const { producers: prods, inputs, outputs } = c
    return { judged: 'bad-commitment', reason: problem, producers: prods, inputs, outputs }
  } catch (err) {
    if (!isDisputeError(err)) throw err
    return failed(err as Error, c)
  }
}

/** Takes side a's input tensors; b shares those it committed to alike and asks for the rest. */
async function shareInputs(o: RefereeOptions, a: Case, b: Case): Promise<void> {
  const { plan, divergence: d } = o
  a.settled = await badCase(o, a)
  for (const { name } of nodeInputs(plan, d.position)) {
    const hash = committedInput(plan, d.position, b.producers, name)
    if (!a.settled && sameBytes(hash, committedInput(plan, d.position, a.producers, name)))
      b.inputs[name] = a.inputs[name]!
    else b.missing.push(name)
  }
}

/** What judging one side's claimed outputs gives. */
export type OutputJudgement = Omit<SideSettlement, 'producers' | 'inputs' | 'reason'>
/** The rules a recomputation is judged under. */
export type JudgingRules = Pick<RefereeOptions, 'plan' | 'rules' | 'compare'>

/** Judges claimed outputs against the recomputation; 'outputs' if a tolerance needs a claim `claims` lacks. */
export async function judgeOutputs(
  o: JudgingRules,
  claimedOutputs: OutputCommitment[],
  claims: NamedTensors | undefined,
  recomputed: NamedTensors,
): Promise<OutputJudgement | 'outputs'> {
  const s: OutputJudgement = { judged: 'ok', referee: [], distance: 0 }
  const outputs: NamedTensors = {}
  const refereeOutputs: NamedTensors = {}
  for (const claimed of claimedOutputs) {
    const rec = recomputed[claimed.name]
    if (!rec) throw new InferenceError(`the referee's run gave no '${claimed.name}'`)
    const h = await exactHash(rec)
    s.referee!.push(h)
    if (sameBytes(h, claimed.exact)) continue
    const rule = judgingRule(tensorRule(o.plan, o.rules, claimed.name), o.compare)
    let agree = false
    if (rule.kind === 'topk') agree = sameBytes(await coarseHash(rec, rule), claimed.coarse)
    else if (rule.kind === 'tolerance') {
      const claim = claims?.[claimed.name]
      if (!claim) return 'outputs'
      outputs[claimed.name] = claim
      agree = tensorsAgree(claimed.name, rec, claim, rule)
      if (s.distance !== undefined) s.distance = Math.max(s.distance, distance(rec, claim))
    }
    if (rule.kind !== 'tolerance') delete s.distance
    if (rule.kind !== 'exact') refereeOutputs[claimed.name] = rec
    if (!agree) s.judged = 'wrong-output'
  }
  if (Object.keys(outputs).length) s.outputs = outputs
  if (Object.keys(refereeOutputs).length) s.refereeOutputs = refereeOutputs
  return s
}

/** Judges a side's claimed outputs against the recomputation on its inputs ('outputs' if it needs them). */
async function judge(o: RefereeOptions, c: Case, rec: NamedTensors): Promise<SideSettlement | 'outputs'> {
  const j = await judgeOutputs(o, c.leaf.leaf.outputs, c.outputs, rec)
  return j === 'outputs' ? j : { ...j, producers: c.producers, inputs: c.inputs }
}

/** Throws the first failure that is not a party's lie (transport), blamed on its side. */
export function rethrowTransport(r: Pair<Settled<unknown>>): void {
  const lost = (['a', 'b'] as const).filter((side) => {
    const x = r[side]
    return !x.ok && !isDisputeError(x.error)
  })
  const first = r[lost[0]!] as { error: unknown } | undefined
  if (first) throw blame(first.error, lost.length === 2 ? 'both' : lost[0]!)
}

/** Round two, for a side not yet settled: the inputs it could not share, its claimed outputs. */
async function secondRound(o: RefereeOptions, party: DisputeParty, c: Case, tolerant: boolean) {
  if (c.settled) return undefined
  const [inputs, outputs] = await Promise.all([
    fetchInputs(o, party, c.missing),
    tolerant ? party.outputs(o.divergence.position) : undefined,
  ])
  return { inputs, outputs }
}

/** Runs node `index` on the job's feeds and a side's inputs; inputs under one key share a run. */
export function nodeRunner(o: { plan: DisputePlan; run: RunNode }, index: number, jobFeeds: NamedTensors) {
  const runs = new Map<string, Promise<NamedTensors>>()
  const recompute = (key: string, inputs: NamedTensors) => {
    if (!runs.has(key)) {
      const feeds = { ...jobFeeds, ...inputs }
      const specs = Object.entries(feeds).map(([name, t]) => ({ name, dtype: t.dtype, dims: t.dims }))
      runs.set(key, o.run(singleNodeModel(o.plan.model, index, specs), feeds))
    }
    return runs.get(key)!
  }
  return { recompute, runs: () => runs.size }
}

/** Recomputes the node on a side's inputs; sides whose inputs hash alike share one run. */
function recomputer(o: RefereeOptions, jobFeeds: NamedTensors) {
  const { plan, divergence: d } = o
  const runner = nodeRunner(o, d.node, jobFeeds)
  const recompute = (c: Case) => {
    const hashes = nodeInputs(plan, d.position).map(({ name }) =>
      committedInput(plan, d.position, c.producers, name),
    )
    return runner.recompute(hashes.map((h) => h!.join()).join('|'), c.inputs)
  }
  return { recompute, runs: runner.runs }
}

export async function referee(o: RefereeOptions): Promise<Settlement> {
  const { plan, rules, divergence: d } = o
  const tolerant = leafOutputs(leafNode(plan, d.position)).some(
    (name) => tensorRule(plan, rules, name).kind === 'tolerance',
  )
  const ask = asker(o.a, o.b, o.signal)
  const open = (side: Side): Case => ({ side, leaf: d.leaves[side], producers: [], inputs: {}, missing: [] })
  const cases = { a: open('a'), b: open('b') }
  const jobInputs = jobInputsOf(plan, d.position, o.jobInputs)
  const { recompute, runs } = recomputer(o, jobInputs)
  const settle = async (c: Case) => {
    if (c.settled || c.missing.length) return
    const j = await judge(o, c, await recompute(c))
    if (j !== 'outputs') c.settled = j
  }
  if (producers(plan, d.position).length) {
    const r = await ask.settle((party, side) => firstRound(o, party, side))
    rethrowTransport(r)
    for (const c of [cases.a, cases.b]) {
      const x = r[c.side]
      if (x.ok) Object.assign(c, { producers: x.value.leaves, inputs: x.value.inputs })
      else c.settled = failed(x.error as Error, c)
    }
    if (!cases.a.settled) await shareInputs(o, cases.a, cases.b)
    else cases.b.missing = nodeInputs(plan, d.position).map((i) => i.name)
  }
  await settle(cases.a)
  await settle(cases.b)
  if (!cases.a.settled || !cases.b.settled) {
    const r = await ask.settle((party, side) => secondRound(o, party, cases[side], tolerant))
    rethrowTransport(r)
    for (const c of [cases.a, cases.b]) {
      const x = r[c.side]
      if (c.settled) continue
      if (!x.ok) c.settled = failed(x.error as Error, c)
      else {
        Object.assign(c, {
          inputs: { ...c.inputs, ...x.value?.inputs },
          outputs: x.value?.outputs,
          missing: [],
        })
        c.settled = await badCase(o, c)
        await settle(c)
      }
      if (!c.settled) throw new InferenceError('the referee could not compare the outputs it was sent')
    }
  }
  return settlement(o, cases.a.settled!, cases.b.settled!, { jobInputs, rounds: ask.rounds, runs: runs() })
}

/** Two sides' judgements as a settlement: the verdict, and under 'drift' the side nearer its recomputation. */
export function settlement<S extends { judged: Judgement; distance?: number }>(
  o: { compare?: NodeRule },
  a: S,
  b: S,
  extra: { jobInputs: NamedTensors; rounds: number; runs: number },
): Omit<Settlement, 'a' | 'b'> & Pair<S> {
  const verdict = verdictOf(a.judged, b.judged)
  const closer = verdict === 'drift' ? closerOf(a.distance, b.distance) : undefined
  return {
    verdict,
    a,
    b,
    ...(closer ? { closer } : {}),
    ...(o.compare ? { compare: o.compare } : {}),
    jobInputs: extra.jobInputs,
    rounds: extra.rounds,
    refereeRuns: extra.runs,
  }
}
