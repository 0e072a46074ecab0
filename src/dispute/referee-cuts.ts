/**
 * The referee over cuts: recompute the leaf where two sides' cuts part (leaf hi), once on each side's
 * own inputs, and judge each side's claimed outputs against that, as referee.ts judges a leaf. Leaf
 * hi reads only tensors in cut lo, so each input a side sends must hash to its cut-lo commitment and
 * each claimed output to its cut-hi one: what it signed binds what it sends.
 *
 *   const d = await bisectCuts({ plan, rules, a, b, workers, job, inputs })
 *   const s = await refereeCuts({ plan, rules, divergence: d, a, b, jobInputs: inputs, run })
 */
import { InferenceError, InvalidOptionError } from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { asker, isDisputeError, type Pair, type Side } from './bisect.ts'
import type { CutDivergence, CutParty } from './bisect-cuts.ts'
import {
  type DisputePlan,
  type DisputeRules,
  leafNode,
  leafOutputs,
  type NodeRule,
  type OutputCommitment,
  tensorRule,
} from './commit.ts'
import type { CutBody } from './cut-commit.ts'
import { sameBytes } from './merkle.ts'
import {
  failure,
  jobInputsOf,
  judgeOutputs,
  nodeInputs,
  nodeRunner,
  type RunNode,
  rethrowTransport,
  type SideSettlement,
  sentHash,
  settlement,
  type Verdict,
} from './referee.ts'

/** A side as the referee over cuts settles it: v1's settlement, less the producer proofs cuts need not. */
export type CutSide = Omit<SideSettlement, 'producers'>

export interface CutSettlement {
  verdict: Verdict
  a: CutSide
  b: CutSide
  /** Under 'drift': the side whose claim is nearer its own recomputation. */
  closer?: Side
  /** The rule given as `compare`, if any. */
  compare?: NodeRule
  /** The job inputs leaf hi reads (from the requester's own copy). */
  jobInputs: NamedTensors
  rounds: number
  refereeRuns: number
}

export interface RefereeCutsOptions {
  plan: DisputePlan
  rules: DisputeRules
  divergence: CutDivergence
  a: CutParty
  b: CutParty
  /** The job's inputs (the requester's; cut -1 was checked against them). */
  jobInputs: NamedTensors
  run: RunNode
  /** Compare tolerance-ruled outputs under this instead of refereeRule. */
  compare?: NodeRule
  signal?: AbortSignal
}

/** A side's two cuts around leaf hi. */
export interface CutsAround {
  lo: CutBody
  hi: CutBody
}

/** The tensors leaf `leaf` reads from other leaves, once each: all in cut `leaf - 1`. */
export const leafInputs = (plan: DisputePlan, leaf: number): string[] =>
  nodeInputs(plan, leaf).map((i) => i.name)

/** Leaf `leaf`'s outputs that its cut holds (those read on), in cut order: what a side claims. */
export function claimedOutputs(plan: DisputePlan, leaf: number, hi: CutBody): OutputCommitment[] {
  const outputs = new Set(leafOutputs(leafNode(plan, leaf)))
  return hi.tensors.filter((t) => outputs.has(t.name))
}

/**
 * Why a side's tensors are not the ones its cuts commit to, if they are not: an input off its cut-lo
 * commitment, an output off its cut-hi one (tensors not given are no problem). DisputeAnswerError
 * for a malformed tensor.
 */
export async function cutProblem(
  cuts: CutsAround,
  ev: { inputs?: NamedTensors; outputs?: NamedTensors },
): Promise<string | undefined> {
  const off = async (kind: string, cut: CutBody, tensors: NamedTensors = {}) => {
    for (const [name, t] of Object.entries(tensors)) {
      const committed = cut.tensors.find((c) => c.name === name)?.exact
      if (!sameBytes(await sentHash(t), committed))
        return `${kind} '${name}' is not the tensor it committed to`
    }
    return undefined
  }
  return (await off('input', cuts.lo, ev.inputs)) ?? (await off('output', cuts.hi, ev.outputs))
}

/** One side's case as it is built up over the referee's rounds. */
interface Case {
  side: Side
  cuts: CutsAround
  claimed: OutputCommitment[]
  inputs: NamedTensors
  /** Inputs still to ask this side for (the other side's copy did not do). */
  missing: string[]
  outputs?: NamedTensors
  settled?: CutSide
}

const committed = (c: Case, name: string) => c.cuts.lo.tensors.find((t) => t.name === name)?.exact

async function fetchTensors(party: CutParty, names: string[]): Promise<NamedTensors> {
  const got = await Promise.all(names.map((name) => party.tensor(name)))
  return Object.fromEntries(names.map((name, i) => [name, got[i]!]))
}

/** A bad-commitment (or bad-answer, for a malformed tensor) judgement if a side's tensors are not its own. */
async function badCase(c: Case): Promise<CutSide | undefined> {
  try {
    const reason = await cutProblem(c.cuts, c)
    return reason ? { judged: 'bad-commitment', reason, inputs: c.inputs, outputs: c.outputs } : undefined
  } catch (err) {
    if (!isDisputeError(err)) throw err
    return failure(err as Error)
  }
}

/** A side's case, checked to fit the divergence: cut lo holds every input, cut hi some output. */
function openCase(o: RefereeCutsOptions, side: Side, reads: string[]): Case {
  const { plan, divergence: d } = o
  const cuts = { lo: d.cuts.lo[side].body, hi: d.cuts.hi[side].body }
  if (cuts.lo.position !== d.leaf - 1 || cuts.hi.position !== d.leaf)
    throw new InvalidOptionError(`side ${side}'s cuts are not around leaf ${d.leaf}`)
  const c: Case = { side, cuts, claimed: claimedOutputs(plan, d.leaf, cuts.hi), inputs: {}, missing: [] }
  const absent = reads.find((name) => !committed(c, name))
  if (absent) throw new InvalidOptionError(`side ${side}'s cut at ${d.leaf - 1} lacks '${absent}'`)
  if (!c.claimed.length) throw new InvalidOptionError(`leaf ${d.leaf} writes nothing into its cut`)
  return c
}

type Ask = ReturnType<typeof asker<CutParty>>

/** The names of a side's claimed outputs compared by value (under a tolerance): their tensors are asked. */
const tolerantOutputs = (o: RefereeCutsOptions, c: Case) =>
  c.claimed.filter((t) => tensorRule(o.plan, o.rules, t.name).kind === 'tolerance').map((t) => t.name)

/** Outputs asked with the inputs when they are known to take at most this many bytes a side. */
export const PREFETCH_BYTES = 1 << 20

/**
 * The outputs compared by value that round one asks for: drift makes their exact hashes differ from
 * the referee's nearly always, and a round of their own cost a tolerance dispute one more. Only
 * when the search's chunk hashes say they are small: a side matching the referee exactly would
 * have moved them for nothing (a 5-node MLP's 3.7 MB).
 */
function prefetched(o: RefereeCutsOptions, c: Case): string[] {
  const names = tolerantOutputs(o, c)
  const sizes = o.divergence.hiBytes?.[c.side]
  const total = names.reduce((n, name) => n + (sizes?.[name] ?? Number.POSITIVE_INFINITY), 0)
  return total <= PREFETCH_BYTES ? names : []
}

/**
 * Round one: a's copy of every input, b's where it committed otherwise (b shares a's if they are
 * a's), and each side's small outputs compared by value (prefetched).
 */
async function firstRound(
  o: RefereeCutsOptions,
  ask: Ask,
  cases: Pair<Case>,
  reads: string[],
): Promise<void> {
  const { a, b } = cases
  const own = { a: reads, b: reads.filter((name) => !sameBytes(committed(a, name), committed(b, name))) }
  const r = await ask.settle(async (party, side) => {
    const [inputs, outputs] = await Promise.all([
      fetchTensors(party, own[side]),
      fetchTensors(party, prefetched(o, cases[side])),
    ])
    return { inputs, outputs }
  })
  rethrowTransport(r)
  for (const c of [a, b]) {
    const x = r[c.side]
    if (!x.ok) c.settled = failure(x.error as Error)
    else {
      c.inputs = x.value.inputs
      if (Object.keys(x.value.outputs).length) c.outputs = x.value.outputs
      c.settled = await badCase(c)
    }
  }
  for (const name of reads) {
    if (own.b.includes(name)) continue
    if (a.settled) b.missing.push(name)
    else b.inputs[name] = a.inputs[name]!
  }
}

/** Round two, for a side not yet settled: the inputs it could not share, its outputs if not yet asked. */
async function secondRound(
  o: RefereeCutsOptions,
  ask: Ask,
  cases: Pair<Case>,
  settle: (c: Case) => Promise<void>,
) {
  const r = await ask.settle(async (party, side) => {
    const c = cases[side]
    if (c.settled) return undefined
    const [inputs, outputs] = await Promise.all([
      fetchTensors(party, c.missing),
      c.outputs ? c.outputs : fetchTensors(party, tolerantOutputs(o, c)),
    ])
    return { inputs, outputs }
  })
  rethrowTransport(r)
  for (const c of [cases.a, cases.b]) {
    const x = r[c.side]
    if (c.settled) continue
    if (!x.ok) c.settled = failure(x.error as Error)
    else {
      Object.assign(c, {
        inputs: { ...c.inputs, ...x.value?.inputs },
        outputs: x.value?.outputs,
        missing: [],
      })
      c.settled = await badCase(c)
      await settle(c)
    }
    if (!c.settled) throw new InferenceError('the referee could not compare the outputs it was sent')
  }
}

/**
 * Settles a divergence over cuts: each side judged on leaf hi's recomputation from its own inputs.
 * A failed question that is no lie (transport) throws, blamed on its side.
 */
export async function refereeCuts(o: RefereeCutsOptions): Promise<CutSettlement> {
  const { plan, divergence: d } = o
  const reads = leafInputs(plan, d.leaf)
  const cases = { a: openCase(o, 'a', reads), b: openCase(o, 'b', reads) }
  const ask = asker<CutParty>(o.a, o.b, o.signal)
  const jobInputs = jobInputsOf(plan, d.leaf, o.jobInputs)
  const runner = nodeRunner(o, d.node, jobInputs)
  // Sides whose inputs hash alike share one run.
  const settle = async (c: Case) => {
    if (c.settled || c.missing.length) return
    const key = reads.map((name) => committed(c, name)!.join()).join('|')
    const j = await judgeOutputs(o, c.claimed, c.outputs, await runner.recompute(key, c.inputs))
    if (j !== 'outputs') c.settled = { ...j, inputs: c.inputs }
  }
  if (reads.length) await firstRound(o, ask, cases, reads)
  await settle(cases.a)
  await settle(cases.b)
  if (!cases.a.settled || !cases.b.settled) await secondRound(o, ask, cases, settle)
  const extra = { jobInputs, rounds: ask.rounds, runs: runner.runs() }
  return settlement(o, cases.a.settled!, cases.b.settled!, extra)
}
