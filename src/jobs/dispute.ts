/**
 * The requester's side of a dispute: two replicas disagree 1–1, so instead of buying a third, ask
 * both contributors for signed cuts of their traces over `/peer-compute/dispute/2.0.0` (src/dispute),
 * search them to the leaf where the two part, and let our own referee recompute that node.
 * Implements QuorumEffects.dispute.
 *
 * @example
 * ```ts
 * const disputer = createDisputer({ links, modelBytes, run })
 * // in the requester's QuorumEffects:
 * dispute: (a, b, signal) => disputer.dispute({ model, inputs, compare: policy.compare }, a, b, signal)
 * ```
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { Connection, Logger } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import { isDisputeError, type PartyError } from '../dispute/bisect.ts'
import { bisectCuts } from '../dispute/bisect-cuts.ts'
import {
  type DisputePlan,
  type DisputeRules,
  disputePlan,
  disputeRules,
  exactHash,
} from '../dispute/commit.ts'
import { type CutJob, openCut } from '../dispute/cut-commit.ts'
import { cutAt, cutPlan } from '../dispute/cuts.ts'
import { sameBytes } from '../dispute/merkle.ts'
import { buildCutRecord, encodeCutRecord } from '../dispute/record-cuts.ts'
import type { RunNode } from '../dispute/referee.ts'
import { refereeCuts } from '../dispute/referee-cuts.ts'
import { type RemoteCutParty, remoteCutParty } from '../dispute/wire-cuts.ts'
import type { SignedCommitment } from '../dispute/wire-frames.ts'
import { NoPeerAvailableError } from '../shared/errors.ts'
import { DISPUTE_PROTOCOL } from '../shared/protocol.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { tensorsCid } from '../shared/tensor-codec.ts'
import { outputsAgree } from '../trust/compare.ts'
import type { CompareRule } from '../trust/policy.ts'
import type { QuorumDispute } from '../trust/quorum-record.ts'
import type { DisputeOutcome, DisputeSide, QuorumState, Replica } from './quorum.ts'

/** The network a disputer needs: the direct link a replica went over (dispatch.ts's Links.direct). */
export interface DisputeLinks {
  direct(peer: string): Pick<Connection, 'newStream'> | undefined
}

export interface DisputerOptions {
  links: DisputeLinks
  /** The model's bytes by CID string (the requester's model store), or undefined. */
  modelBytes(model: string): Promise<Uint8Array | undefined>
  /** The referee's runtime: one node at a time, graph optimisation 'disabled'. */
  run: RunNode
  /** The whole dispute, commitments included (default 60 s). */
  timeoutMs?: number
  /** Per answer (default 10 s). */
  answerTimeoutMs?: number
  /** For a commitment, which reruns the whole trace (default 30 s). */
  commitTimeoutMs?: number
  log?: Logger
}

/** What the disputed job was: its model, inputs and compare rule. */
export interface DisputeJob {
  model: string
  inputs: NamedTensors
  compare: CompareRule
}

export interface Disputer {
  dispute(job: DisputeJob, a: Replica, b: Replica, signal: AbortSignal): Promise<DisputeOutcome>
}

/** Plans parsed (a model's graph), kept for the next dispute on the same model. */
const PLANS_KEPT = 2

export function createDisputer(o: DisputerOptions): Disputer {
  const plans = new Map<string, DisputePlan>()
  return { dispute: (job, a, b, signal) => dispute(o, plans, job, a, b, signal) }
}

/** The plan of `model` from `plans`, else parsed from its bytes and kept; undefined if not held. */
async function planOf(o: DisputerOptions, plans: Map<string, DisputePlan>, model: string) {
  const known = plans.get(model)
  if (known) return known
  const bytes = await o.modelBytes(model)
  if (!bytes) return undefined
  const plan = disputePlan(bytes)
  plans.set(model, plan)
  for (const k of plans.keys()) if (plans.size > PLANS_KEPT) plans.delete(k)
  return plan
}

const undecided = (reason: string, timedOut?: DisputeSide[]): DisputeOutcome => ({
  verdict: 'undecided',
  reason,
  ...(timedOut?.length ? { timedOut } : {}),
})

/** One dispute's fixed parts: the job, its plan and rules, the deadline and the parties opened. */
interface Round {
  o: DisputerOptions
  job: DisputeJob
  plan: DisputePlan
  rules: DisputeRules
  deadline: AbortSignal
  /** Every party opened, closed when the dispute ends. */
  parties: RemoteCutParty[]
}

async function dispute(
  o: DisputerOptions,
  plans: Map<string, DisputePlan>,
  job: DisputeJob,
  a: Replica,
  b: Replica,
  signal: AbortSignal,
): Promise<DisputeOutcome> {
  const ra = a.result
  const rb = b.result
  if (!ra || !rb) return undecided('a side has no result')
  const plan = await planOf(o, plans, job.model)
  if (!plan) return undecided(`model ${job.model} is not held here`)
  const rules = disputeRules(job.compare)
  const deadline = AbortSignal.any([signal, AbortSignal.timeout(o.timeoutMs ?? 60_000)])
  const round: Round = { o, job, plan, rules, deadline, parties: [] }
  try {
    const [pa, pb] = await settledPair(open(round, a), open(round, b))
    if (!pa.ok || !pb.ok) return undecided(`no dispute stream: ${reasons(pa, pb)}`)
    const [na, nb] = await settledPair(pa.value.ready(), pb.value.ready())
    if (!na.ok || !nb.ok) return undecided(`no trace: ${reasons(na, nb)}`, timedOutSides(na, nb))
    if (na.value !== plan.leaves.length || nb.value !== plan.leaves.length)
      return undecided(`a side's trace has ${na.value} or ${nb.value} leaves, not ${plan.leaves.length}`)
    // Each side's trace must end in the result it signed, or its trace proves nothing about it.
    const [ba, bb] = await settledPair(bound(round, pa.value, a), bound(round, pb.value, b))
    if (!ba.ok || !bb.ok) return undecided(`binding: ${reasons(ba, bb)}`, timedOutSides(ba, bb))
    if (ba.value.problem || bb.value.problem) {
      // Proven from the side's own signed cut, but no record carries it: the quorum buys a replica.
      const verdict: DisputeOutcome['verdict'] =
        ba.value.problem && bb.value.problem ? 'both-invalid' : ba.value.problem ? 'a-invalid' : 'b-invalid'
      return { verdict, reason: [ba.value.problem, bb.value.problem].filter(Boolean).join('; ') }
    }
    const last = { a: ba.value.signed, b: bb.value.signed }
    return await judge(round, [a, pa.value], [b, pb.value], last)
  } catch (err) {
    const e = err as PartyError
    // A lie proven during the search (a cut off the job's inputs, a changed commitment, a forged
    // signature) is a verdict like a failed binding: no record, so the quorum buys a replica.
    if (isDisputeError(e) && e.party) {
      const verdict = e.party === 'both' ? 'both-invalid' : e.party === 'a' ? 'a-invalid' : 'b-invalid'
      o.log?.('dispute %s vs %s: %s: %s: %s', a.peer, b.peer, verdict, e.name, e.message)
      return { verdict, reason: `${e.name}: ${e.message}` }
    }
    o.log?.('dispute %s vs %s undecided: %s: %s', a.peer, b.peer, e.name, e.message)
    const late = e.name === 'PartyTimeoutError' && e.party ? sidesOf(e.party) : []
    return undecided(`${e.name}: ${e.message}`, late)
  } finally {
    await Promise.all(round.parties.map((p) => p.close().catch(() => {})))
  }
}

/** The job a replica's cuts must name: its own signed job, the model and the inputs. */
const cutJob = (round: Round, r: Replica): CutJob => ({
  job: r.result!.receipt.body.job,
  model: CID.parse(round.job.model),
  input: r.result!.receipt.body.input,
})

/** Asks replica `r`'s contributor over a new dispute stream on its direct link. */
async function open(round: Round, r: Replica): Promise<RemoteCutParty> {
  const { o, job, deadline } = round
  const link = o.links.direct(r.peer)
  if (!link) throw new NoPeerAvailableError(`no direct link to ${r.peer}`)
  const stream = await link.newStream(DISPUTE_PROTOCOL, { signal: deadline })
  const party = remoteCutParty(stream, {
    worker: r.peer,
    ...cutJob(round, r),
    inputs: job.inputs,
    compare: job.compare,
    timeoutMs: o.answerTimeoutMs ?? 10_000,
    commitTimeoutMs: o.commitTimeoutMs ?? 30_000,
    signal: deadline,
  })
  round.parties.push(party)
  return party
}

/** Searches two bound traces' cuts to the leaf where they part and lets our referee settle it. */
async function judge(
  round: Round,
  [a, pa]: [Replica, RemoteCutParty],
  [b, pb]: [Replica, RemoteCutParty],
  last: { a: Uint8Array; b: Uint8Array },
): Promise<DisputeOutcome> {
  const { o, job, plan, rules, deadline } = round
  const workers = { a: a.peer, b: b.peer }
  // Both replicas ran the same model on the same inputs; only their job CIDs differ.
  const jobs = { a: cutJob(round, a), b: cutJob(round, b) }
  const divergence = await bisectCuts({
    plan,
    rules,
    a: pa,
    b: pb,
    workers,
    job: jobs,
    last,
    inputs: job.inputs,
    // The receipts naming that input CID were checked against these inputs when they came.
    inputsChecked: true,
    signal: deadline,
  })
  const settlement = await refereeCuts({
    plan,
    rules,
    divergence,
    a: pa,
    b: pb,
    jobInputs: job.inputs,
    run: o.run,
    signal: deadline,
  })
  const record = encodeCutRecord(
    buildCutRecord({ model: job.model, plan, rules, divergence, settlement, workers }),
  )
  o.log?.('dispute %s vs %s: %s at leaf %d', a.peer, b.peer, settlement.verdict, divergence.leaf)
  return {
    verdict: settlement.verdict,
    ...(settlement.closer ? { closer: settlement.closer } : {}),
    record,
  } satisfies DisputeOutcome
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: Error }
async function settledPair<A, B>(a: Promise<A>, b: Promise<B>): Promise<[Settled<A>, Settled<B>]> {
  const [x, y] = await Promise.allSettled([a, b])
  const of = <T>(r: PromiseSettledResult<T>): Settled<T> =>
    r.status === 'fulfilled' ? { ok: true, value: r.value } : { ok: false, error: r.reason as Error }
  return [of(x), of(y)]
}
const reasons = (...rs: Settled<unknown>[]) =>
  rs.flatMap((r) => (r.ok ? [] : [`${r.error.name}: ${r.error.message}`])).join('; ')
const timedOutSides = (a: Settled<unknown>, b: Settled<unknown>): DisputeSide[] =>
  (['a', 'b'] as const).filter((_, i) => {
    const r = [a, b][i]!
    return !r.ok && r.error.name === 'PartyTimeoutError'
  })
const sidesOf = (p: DisputeSide | 'both'): DisputeSide[] => (p === 'both' ? ['a', 'b'] : [p])

/**
 * Whether a side's trace ends in the result it signed: its signed last cut holds the graph outputs,
 * whose hashes are compared with the result's; where they differ, the traced tensor (checked
 * against that cut) is compared with the result under the job's rule. `problem` says why not. A
 * transport failure throws; a proof that fails is a problem.
 */
async function bound(
  round: Round,
  party: RemoteCutParty,
  r: Replica,
): Promise<{ signed: Uint8Array; problem?: string }> {
  const { plan, rules, job } = round
  const result = r.result!
  const position = plan.leaves.length - 1
  const signed = await party.cut(position)
  const names = cutAt(cutPlan(plan), position)
  try {
    const expect = { ...cutJob(round, r), worker: r.peer, position, names, plan, rules }
    const body = await openCut(signed, expect)
    const traced: NamedTensors = {}
    for (const name of plan.model.outputs) {
      const committed = body.tensors.find((t) => t.name === name)
      const mine = result.outputs[name]
      if (!committed || !mine) continue
      if (sameBytes(await exactHash(mine).catch(() => undefined), committed.exact)) {
        traced[name] = mine
        continue
      }
      const t = await party.tensor(name)
      const hash = await exactHash(t).catch(() => undefined)
      if (!hash || !sameBytes(hash, committed.exact))
        return { signed, problem: `output '${name}' is not the one it committed to` }
      traced[name] = t
    }
    const ours = { outputs: traced, outputCid: (await tensorsCid(traced)).toString() }
    const theirs = { outputs: result.outputs, outputCid: result.outputCid }
    if (outputsAgree(ours, theirs, job.compare)) return { signed }
    return { signed, problem: 'its trace does not end in the result it signed' }
  } catch (err) {
    if (isDisputeError(err)) return { signed, problem: `${(err as Error).name}: ${(err as Error).message}` }
    throw err
  }
}

/** The quorum record's `dispute` for a job settled by one (src/trust/quorum-record.ts), if it was. */
export function quorumDispute(q: QuorumState): QuorumDispute | undefined {
  const d = q.dispute
  if (!d) return undefined
  const receipt = (peer: string) =>
    q.replicas.find((r) => r.peer === peer && r.status === 'ok')?.result?.receipt
  const side = (s: DisputeSide, i: 0 | 1) => {
    const r = receipt(d.peers[i])
    // A v1 record (a journal from before disputes over cuts) needs each side's signed commitment
    // beside it; a v2 record carries each side's signed cuts itself.
    const signed = d.signed && (dagCbor.decode(d.signed[s]) as SignedCommitment)
    return r ? { worker: d.peers[i], ...(signed ? { signed } : {}), receipt: r } : undefined
  }
  const a = side('a', 0)
  const b = side('b', 1)
  return a && b ? { record: d.record, side: d.accepted, a, b } : undefined
}
