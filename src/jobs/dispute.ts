/**
 * The requester's side of a dispute: two replicas disagree 1–1, so instead of buying a third, ask
 * both contributors about their traces over `/peer-compute/dispute/1.0.0` (src/dispute), bisect to
 * the first node they part at, and let our own referee recompute it. Implements QuorumEffects.dispute.
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
import { bisect, isDisputeError, type PartyError } from '../dispute/bisect.ts'
import {
  checkLeaf,
  type DisputePlan,
  type DisputeRules,
  disputePlan,
  disputeRules,
  exactHash,
} from '../dispute/commit.ts'
import { sameBytes } from '../dispute/merkle.ts'
import { buildDisputeRecord, encodeDisputeRecord } from '../dispute/record.ts'
import { type RunNode, referee } from '../dispute/referee.ts'
import { type RemoteParty, remoteParty } from '../dispute/wire.ts'
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
  parties: RemoteParty[]
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
    const [sa, sb] = await settledPair(pa.value.signed(), pb.value.signed())
    if (!sa.ok || !sb.ok) return undecided(`no commitment: ${reasons(sa, sb)}`, timedOutSides(sa, sb))
    const signed = { a: dagCbor.encode(sa.value), b: dagCbor.encode(sb.value) }
    // Each side's trace must end in the result it signed, or its trace proves nothing about it.
    const [ba, bb] = await settledPair(
      bound(plan, rules, job.compare, pa.value, ra),
      bound(plan, rules, job.compare, pb.value, rb),
    )
    if (!ba.ok || !bb.ok) return undecided(`binding: ${reasons(ba, bb)}`, timedOutSides(ba, bb))
    if (ba.value || bb.value) {
      // Proven from the side's own signatures, but the record format cannot carry it: no record,
      // so the quorum buys a replica as before.
      const verdict: DisputeOutcome['verdict'] =
        ba.value && bb.value ? 'both-invalid' : ba.value ? 'a-invalid' : 'b-invalid'
      return { verdict, reason: [ba.value, bb.value].filter(Boolean).join('; '), signed }
    }
    const roots = { a: sa.value.body.root, b: sb.value.body.root }
    return await judge(round, [a, pa.value], [b, pb.value], roots, signed)
  } catch (err) {
    const e = err as PartyError
    o.log?.('dispute %s vs %s undecided: %s: %s', a.peer, b.peer, e.name, e.message)
    const late = e.name === 'PartyTimeoutError' && e.party ? sidesOf(e.party) : []
    return undecided(`${e.name}: ${e.message}`, late)
  } finally {
    await Promise.all(round.parties.map((p) => p.close().catch(() => {})))
  }
}

/** Asks replica `r`'s contributor over a new dispute stream on its direct link. */
async function open(round: Round, r: Replica): Promise<RemoteParty> {
  const { o, job, deadline } = round
  const link = o.links.direct(r.peer)
  if (!link) throw new NoPeerAvailableError(`no direct link to ${r.peer}`)
  const stream = await link.newStream(DISPUTE_PROTOCOL, { signal: deadline })
  const party = remoteParty(stream, {
    worker: r.peer,
    job: r.result!.receipt.body.job,
    model: CID.parse(job.model),
    inputs: job.inputs,
    // Checked against our inputs when the receipt was: no second hash of up to 16 MiB per side.
    input: r.result!.receipt.body.input,
    compare: job.compare,
    timeoutMs: o.answerTimeoutMs ?? 10_000,
    commitTimeoutMs: o.commitTimeoutMs ?? 30_000,
    signal: deadline,
  })
  round.parties.push(party)
  return party
}

/** Bisects two bound, committed traces to their first divergence and lets our referee settle it. */
async function judge(
  round: Round,
  [a, pa]: [Replica, RemoteParty],
  [b, pb]: [Replica, RemoteParty],
  roots: { a: Uint8Array; b: Uint8Array },
  signed: { a: Uint8Array; b: Uint8Array },
): Promise<DisputeOutcome> {
  const { o, job, plan, rules, deadline } = round
  const divergence = await bisect({ plan, rules, a: pa, b: pb, roots, signal: deadline })
  const settlement = await referee({
    plan,
    rules,
    divergence,
    a: pa,
    b: pb,
    jobInputs: job.inputs,
    run: o.run,
    signal: deadline,
  })
  const record = encodeDisputeRecord(
    buildDisputeRecord({ model: job.model, plan, rules, divergence, settlement }),
  )
  o.log?.('dispute %s vs %s: %s at leaf %d', a.peer, b.peer, settlement.verdict, divergence.position)
  return {
    verdict: settlement.verdict,
    ...(settlement.closer ? { closer: settlement.closer } : {}),
    record,
    signed,
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
 * Why a side's committed trace is not bound to the result it signed (its graph outputs, proven
 * against its commitment, disagree with that result under the job's rule), or undefined if it is.
 * A transport failure throws; a proof that fails is a reason.
 */
async function bound(
  plan: DisputePlan,
  rules: DisputeRules,
  compare: CompareRule,
  party: RemoteParty,
  result: NonNullable<Replica['result']>,
): Promise<string | undefined> {
  const commitment = await party.commitment()
  const names = plan.model.outputs.filter((name) => plan.producer[name] !== undefined)
  const positions = [...new Set(names.map((name) => plan.producer[name]!))]
  const traced: NamedTensors = {}
  try {
    for (const p of positions) {
      const [leaf, outputs] = await Promise.all([party.leaf(p), party.outputs(p)])
      await checkLeaf(plan, rules, commitment, p, leaf)
      for (const o of leaf.leaf.outputs) {
        if (!names.includes(o.name)) continue
        const t = outputs[o.name]
        if (!t) return `its trace has no output '${o.name}'`
        const hash = await exactHash(t).catch(() => undefined)
        if (!hash || !sameBytes(hash, o.exact)) return `output '${o.name}' is not the one it committed to`
        traced[o.name] = t
      }
    }
  } catch (err) {
    if (isDisputeError(err)) return `${(err as Error).name}: ${(err as Error).message}`
    throw err
  }
  const mine = { outputs: traced, outputCid: (await tensorsCid(traced)).toString() }
  const signed = { outputs: result.outputs, outputCid: result.outputCid }
  return outputsAgree(mine, signed, compare) ? undefined : 'its trace does not end in the result it signed'
}

/** The quorum record's `dispute` for a job settled by one (src/trust/quorum-record.ts), if it was. */
export function quorumDispute(q: QuorumState): QuorumDispute | undefined {
  const d = q.dispute
  if (!d) return undefined
  const receipt = (peer: string) =>
    q.replicas.find((r) => r.peer === peer && r.status === 'ok')?.result?.receipt
  const side = (s: DisputeSide, i: 0 | 1) => {
    const r = receipt(d.peers[i])
    const signed = dagCbor.decode(d.signed[s]) as SignedCommitment
    return r ? { worker: d.peers[i], signed, receipt: r } : undefined
  }
  const a = side('a', 0)
  const b = side('b', 1)
  return a && b ? { record: d.record, side: d.accepted, a, b } : undefined
}
