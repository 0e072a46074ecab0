/**
 * Runs one logical job to a named end state under a verification policy: dispatch replicas to
 * distinct contributors, reissue on timeout / disconnect / rejection, add replicas on disagreement,
 * and accept once `quorum` replicas agree. Effects (network, storage, clock) are injected.
 */
import type { NamedTensors } from '../shared/tensor.ts'
import { agreementGroups } from '../trust/compare.ts'
import type { VerificationPolicy } from '../trust/policy.ts'
import type { Receipt } from '../trust/receipt.ts'
import type { Outcome } from '../trust/reputation.ts'
import { classifyFailure, type FailureKind, PUNISHED_REFUSALS } from './failure.ts'
import { MAX_REASON_LENGTH } from './messages.ts'

/**
 * 'lost': in flight when the page went away; 'busy': refused for capacity (the replica is then taken
 * out and counted in `QuorumState.busy`); 'refused': declined by the contributor. None of the three
 * counts as an attempt.
 */
export type ReplicaStatus =
  | 'dispatched'
  | 'ok'
  | 'failed'
  | 'timedOut'
  | 'forged'
  | 'lost'
  | 'busy'
  | 'refused'

export interface Replica {
  peer: string
  status: ReplicaStatus
  startedAt: number
  endedAt?: number
  /** Present when status is 'ok'. */
  result?: { job: string; outputs: NamedTensors; receipt: Receipt; outputCid: string; roundTripMs: number }
  error?: { name: string; message: string; code?: string }
  /** An ok result a dispute proved wrong: out of every agreement group, its worker punished once. */
  convicted?: boolean
}

export type FinalState = 'verified' | 'failed' | 'inconclusive'

export interface QuorumState {
  replicas: Replica[]
  /** Replication chosen for this job: the policy's, or 1 for an adaptive single replica. */
  target: number
  quorum: number
  adaptiveSingle: boolean
  /** Dispatches refused for capacity and retried: counted, not kept as replicas. */
  busy?: number
  state?: FinalState
  reason?: string
  /** Verified: the probability that the agreed result is wrong (src/trust/risk.ts), as judged then. */
  risk?: number
  /** A 1–1 disagreement settled by dispute: the accepted side and the evidence for the job's record. */
  dispute?: SettledDispute
}

export type DisputeSide = 'a' | 'b'

/** What a dispute between two disagreeing replicas came to (src/jobs/dispute.ts). */
export interface DisputeOutcome {
  /** 'undecided': no divergence found, a party refused or timed out, or the dispute failed. */
  verdict: 'a-invalid' | 'b-invalid' | 'both-invalid' | 'drift' | 'undecided'
  /** Under 'drift': the side whose claim the referee found nearer its recomputation. */
  closer?: DisputeSide
  /** The encoded dispute record (encodeDisputeRecord), when a verdict was reached. */
  record?: Uint8Array
  /** Each side's signed commitment (dag-cbor): what binds the record's sides to the workers and the job. */
  signed?: { a: Uint8Array; b: Uint8Array }
  /** Sides that did not answer in time (recorded 'timedOut', as a late replica is). */
  timedOut?: DisputeSide[]
  reason?: string
}

export interface SettledDispute {
  verdict: 'a-invalid' | 'b-invalid' | 'drift'
  /** The side whose result the job accepts. */
  accepted: DisputeSide
  /** The two workers, as sides a and b. */
  peers: [string, string]
  record: Uint8Array
  /** Bytes, not objects: the state is stored as it is (IndexedDB keeps no CID class). */
  signed: { a: Uint8Array; b: Uint8Array }
  /**
   * The accepted side stands alone: adaptive replication trusted its worker to run this job alone.
   * Otherwise a verdict only rules a side out, and the job still needs a quorum of whole results.
   */
  alone?: boolean
}

/** The worker whose result a dispute accepted. */
export const disputeWinner = (d: SettledDispute): string => d.peers[d.accepted === 'a' ? 0 : 1]

export interface DispatchResult {
  job: string
  worker: string
  outputs: NamedTensors
  receipt: Receipt
  roundTripMs: number
}

export interface QuorumEffects {
  /** A contributor for the next replica, skipping `exclude`; undefined if none is free now. */
  pick(exclude: ReadonlySet<string>, sameClassAs: string[]): string | undefined
  /** Why no contributor can be reached at all (each one's link failed), or undefined. */
  noPath?(): string | undefined
  /** Contributors that could take this job at all, busy or not, outside `exclude`. */
  eligible(exclude: ReadonlySet<string>): number
  /**
   * Once every eligible contributor has refused, how long to wait for a new one before failing
   * (links to honest peers may still be forming). Default 0.
   */
  refusalGraceMs?: number
  /** Resolves when capacity may have changed (a peer appeared or a slot freed), and at least every second. */
  capacityChanged(signal: AbortSignal): Promise<void>
  dispatch(peer: string, timeoutMs: number, signal: AbortSignal): Promise<DispatchResult>
  /** Adaptive replication: may this job run on this single trusted peer alone? */
  singleReplicaOk(peer: string): boolean
  /** A result that looks wrong without comparing (non-finite, wrong shape, too fast): replicate it. */
  suspicious(result: DispatchResult): boolean
  /** `checked`: a valid result that at least one other peer's agreed with. */
  recordOutcome(peer: string, outcome: Outcome, checked?: boolean): Promise<void>
  /**
   * Whether two peers compute in one homogeneous class (default: yes). Bit-exact agreement is
   * evidence only within a class: under `exact`, a replica of another class that differs is drift,
   * not a lie, and is not punished.
   */
  sameClass?(a: string, b: string): boolean
  /** Persist after every change, so a reload resumes here. */
  save(state: QuorumState): Promise<void>
  /** A replica left running past the verdict has ended and been judged (its status is final). */
  lateEnded?(): void
  /** The stated risk of a result these peers agreed on, from their reputation before this job counts. */
  statedRisk?(peers: string[]): number
  /**
   * Settles a 1–1 disagreement between two ok replicas (a: the earlier) by bisection and a referee;
   * undefined or a throw is 'undecided'. Absent: a disagreement buys more replicas, as always.
   */
  dispute?(a: Replica, b: Replica, signal: AbortSignal): Promise<DisputeOutcome | undefined>
}

const STATUS: Record<FailureKind, ReplicaStatus> = {
  busy: 'busy',
  refused: 'refused',
  timedOut: 'timedOut',
  forged: 'forged',
  transport: 'failed',
}

/** Refusals listed in a job's failure reason, each reason already cut to MAX_REASON_LENGTH. */
const MAX_LISTED_REFUSALS = 8

/** Resumes or starts the job; resolves with the final state (also stored in `s.state`). */
export async function runQuorum(
  s: QuorumState,
  policy: VerificationPolicy,
  fx: QuorumEffects,
  deadline: number,
  signal?: AbortSignal,
): Promise<QuorumState> {
  const jobSignal = AbortSignal.any([
    AbortSignal.timeout(Math.max(0, deadline - Date.now())),
    ...(signal ? [signal] : []),
  ])
  // Once failed or inconclusive, replicas still running are cancelled. Once verified, they are left
  // to finish and judged against the result (as BOINC validates late results): a liar that is always
  // last must not escape judgement by being cancelled.
  const decided = new AbortController()
  const dispatchSignal = AbortSignal.any([jobSignal, decided.signal])
  const timedOut = new Promise<void>((r) => jobSignal.addEventListener('abort', () => r(), { once: true }))
  const inflight = new Map<Replica, Promise<void>>()
  let allRefusedSince: number | undefined
  let noPath: string | undefined

  // The loop saves only what changed since the state it was given (on record already) or its last
  // save: a job waiting for capacity wakes at every change of anyone's capacity, and rewriting its
  // unchanged state each time cost a batch several writes per job. Replicas that end save on their own.
  let changed = false
  // Replicas in flight when the page went away are lost: they do not count as attempts.
  for (const r of s.replicas) {
    if (r.status !== 'dispatched') continue
    r.status = 'lost'
    changed = true
  }
  const counts = (r: Replica) => r.status !== 'lost' && r.status !== 'busy' && r.status !== 'refused'
  const refused = () => s.replicas.filter((r) => r.status === 'refused')
  const attempts = () => s.replicas.filter(counts).length
  const ok = () => s.replicas.filter((r) => r.status === 'ok' && !r.convicted)
  const groups = () =>
    agreementGroups(
      ok().map((r) => ({ r, outputs: r.result!.outputs, outputCid: r.result!.outputCid })),
      policy.compare,
    )
  const best = () => groups()[0]?.length ?? 0
  const finish = async (state: FinalState, reason?: string) => {
    if (state !== 'verified') decided.abort()
    s.state = state
    if (reason) s.reason = reason
    await fx.save(s)
    return s
  }

  const launch = (peer: string) => {
    const rep: Replica = { peer, status: 'dispatched', startedAt: Date.now() }
    s.replicas.push(rep)
    changed = true
    const timeout = Math.min(policy.replicaTimeoutMs, Math.max(100, deadline - Date.now()))
    const p = fx
      .dispatch(peer, timeout, dispatchSignal)
      .then(
        (res) => {
          rep.status = 'ok'
          rep.result = { ...res, outputCid: res.receipt.body.output.toString() }
        },
        (thrown: unknown) => {
          const err = (thrown instanceof Error ? thrown : new Error(String(thrown))) as Error & {
            code?: string
          }
          rep.status = STATUS[classifyFailure(err)]
          // Bounded here too: whatever the message came from, it is stored and shown.
          const message = String(err.message).slice(0, 2 * MAX_REASON_LENGTH)
          const code = typeof err.code === 'string' ? err.code.slice(0, 32) : undefined
          rep.error = { name: err.name, message, ...(code ? { code } : {}) }
        },
      )
      .then(async () => {
        rep.endedAt = Date.now()
        inflight.delete(rep)
        if (rep.status === 'timedOut') await fx.recordOutcome(peer, 'timedOut')
        if (rep.status === 'forged') await fx.recordOutcome(peer, 'invalid')
        if (rep.status === 'busy') {
          // A capacity refusal is a retry, not a replica: counted apart, so counts stay honest.
          s.replicas.splice(s.replicas.indexOf(rep), 1)
          s.busy = (s.busy ?? 0) + 1
          await new Promise((r) => setTimeout(r, 100)) // let its advert catch up
        }
        if (!s.state) await fx.save(s)
      })
    inflight.set(rep, p)
  }

  /** Replicas still needed now: enough to reach `target` results, or more after disagreement. */
  const wanted = () => Math.max(s.target - ok().length - inflight.size, s.quorum - best() - inflight.size, 0)

  const escalate = () => {
    changed = true
    s.adaptiveSingle = false
    s.target = policy.redundancy
    s.quorum = policy.quorum
  }

  /** Peers a new replica must not go to: their replica stands, or they declined this job. */
  const barred = () =>
    new Set(
      s.replicas
        .filter((r) => ['ok', 'dispatched', 'forged', 'refused'].includes(r.status))
        .map((r) => r.peer),
    )
  /** Every contributor that could take the job refused it, and none has given a result. */
  const allRefused = () => refused().length > 0 && ok().length === 0 && fx.eligible(barred()) === 0

  /** Two ok replicas that disagree, one each, with nothing else running: a dispute may settle them. */
  const disputable = (): [Replica, Replica] | undefined => {
    if (!fx.dispute || policy.dispute === false || s.quorum !== 2 || inflight.size > 0) return undefined
    const g = groups()
    if (g.length !== 2 || g[0]!.length !== 1 || g[1]!.length !== 1) return undefined
    const [a, b] = [g[0]![0]!.r, g[1]![0]!.r].sort((x, y) => s.replicas.indexOf(x) - s.replicas.indexOf(y))
    // The referee's bits are another runtime's: under `exact`, only peers of one class are disputed.
    if (policy.compare.kind === 'exact' && !(fx.sameClass?.(a!.peer, b!.peer) ?? true)) return undefined
    return [a!, b!]
  }
  let disputed = s.dispute !== undefined
  /**
   * Asks fx.dispute once per job. A verdict convicts one side at the node where the two parted; it
   * does not prove the other right after that node, so the other stands alone only where adaptive
   * replication would let its worker run alone. Otherwise the loop buys a replica to agree with it.
   */
  const settleByDispute = async ([a, b]: [Replica, Replica]) => {
    disputed = true
    const out = await fx.dispute!(a, b, jobSignal).catch(() => undefined)
    for (const side of out?.timedOut ?? []) await fx.recordOutcome((side === 'a' ? a : b).peer, 'timedOut')
    const v = out?.verdict
    const accepted: DisputeSide | undefined =
      v === 'a-invalid' ? 'b' : v === 'b-invalid' ? 'a' : v === 'drift' ? out!.closer : undefined
    if (!accepted || !out?.record || !out.signed || jobSignal.aborted) return
    const verdict = v as SettledDispute['verdict']
    const [winner, loser] = accepted === 'a' ? [a, b] : [b, a]
    const alone = policy.adaptive && fx.singleReplicaOk(winner.peer)
    s.dispute = { verdict, accepted, peers: [a.peer, b.peer], record: out.record, signed: out.signed, alone }
    if (verdict !== 'drift') {
      loser.convicted = true
      await fx.recordOutcome(loser.peer, 'invalid')
    }
    changed = true
  }

  while (!s.dispute?.alone && best() < s.quorum) {
    const pair = disputed || jobSignal.aborted ? undefined : disputable()
    if (pair) {
      await settleByDispute(pair)
      if (s.dispute?.alone) break
    }
    // A single trusted replica that forged a receipt or looks wrong escalates to the full policy.
    if (
      s.adaptiveSingle &&
      s.replicas.some(
        (r) => r.status === 'forged' || (r.result && fx.suspicious({ ...r.result, worker: r.peer })),
      )
    ) {
      escalate()
    }
    while (wanted() > 0 && attempts() < policy.maxAttempts) {
      // Distinct contributors first; a peer whose replica merely failed may be retried if no one else is free.
      const committed = barred()
      const used = new Set([...committed, ...s.replicas.filter(counts).map((r) => r.peer)])
      // Bit-exact agreement is sound only within one class: replicas sent together stay in the first's.
      const sameClass =
        policy.compare.kind === 'exact'
          ? s.replicas.filter((r) => r.status === 'ok' || r.status === 'dispatched').map((r) => r.peer)
          : []
      const peer = fx.pick(used, sameClass) ?? fx.pick(committed, sameClass)
      if (peer == null) break
      if (attempts() === 0 && policy.adaptive && s.target > 1 && fx.singleReplicaOk(peer)) {
        s.adaptiveSingle = true
        s.target = 1
        s.quorum = 1
      }
      launch(peer)
    }
    if (changed) {
      changed = false
      await fx.save(s)
    }
    if (jobSignal.aborted) break
    if (inflight.size > 0) {
      await Promise.race([...inflight.values(), timedOut])
      continue
    }
    if (wanted() === 0 || attempts() >= policy.maxAttempts) break
    // Contributors exist but none can be linked: say so now, not at the deadline.
    noPath = ok().length === 0 ? fx.noPath?.() : undefined
    if (noPath) break
    if (allRefused()) {
      allRefusedSince ??= Date.now()
      if (Date.now() - allRefusedSince >= (fx.refusalGraceMs ?? 0)) break
    } else allRefusedSince = undefined
    // Nobody free for the next replica: wait for capacity, up to the deadline.
    await fx.capacityChanged(jobSignal).catch(() => {})
  }

  if (s.dispute?.alone) return acceptDisputed(s.dispute)
  if (!jobSignal.aborted && inflight.size === 0 && best() < s.quorum) {
    if (noPath) return finish('failed', noPath)
    if (allRefused()) return finish('failed', refusalList(refused()))
  }
  const g = groups()
  if ((g[0]?.length ?? 0) >= s.quorum) {
    // The risk is judged on the reputation the workers had before this job adds to it.
    const risk = fx.statedRisk?.(g[0]!.map((m) => m.r.peer))
    if (risk !== undefined) s.risk = risk
    // With a quorum agreeing, every replica outside it is wrong (without one, nothing is proven).
    const checked = g[0]!.length >= 2
    for (const m of g[0]!) await fx.recordOutcome(m.r.peer, 'valid', checked)
    const lead = g[0]![0]!.r.peer
    // A dispute that found drift between two workers found neither lying: neither is punished now.
    const drifted: string[] = s.dispute?.verdict === 'drift' ? s.dispute.peers : []
    const judged = (peer: string) =>
      !drifted.includes(peer) && (policy.compare.kind !== 'exact' || (fx.sameClass?.(lead, peer) ?? true))
    // A dispute's evidence stays in the record only beside the result it accepted.
    if (s.dispute && !g[0]!.some((m) => m.r.peer === disputeWinner(s.dispute!))) delete s.dispute
    for (const other of g.slice(1))
      for (const m of other) if (judged(m.r.peer)) await fx.recordOutcome(m.r.peer, 'invalid')
    // Others computed this job: a refusal that called it bad or unknown was wrong (DESIGN.md, Verification).
    const punish = (r: Replica) => r.status === 'refused' && PUNISHED_REFUSALS.has(r.error?.code ?? '')
    for (const r of s.replicas) if (punish(r)) await fx.recordOutcome(r.peer, 'refused')
    const agreed = g[0]!
    for (const [rep, p] of inflight) {
      void p.then(async () => {
        // Forged and timed-out replicas were recorded as they ended.
        if (rep.status === 'ok') {
          const late = { r: rep, outputs: rep.result!.outputs, outputCid: rep.result!.outputCid }
          const joins = agreementGroups([...agreed, late], policy.compare)[0]!.includes(late)
          if (joins || judged(rep.peer)) await fx.recordOutcome(rep.peer, joins ? 'valid' : 'invalid', joins)
        }
        if (punish(rep)) await fx.recordOutcome(rep.peer, 'refused')
        fx.lateEnded?.()
      })
    }
    return finish('verified')
  }
  /**
   * The dispute's accepted side stands alone, as an adaptive single replica of a trusted worker
   * would: the quorum is that one result (the referee saw one node, not the whole result), its risk
   * is its worker's alone, and it is not counted as a check. The loser was punished at the verdict.
   */
  async function acceptDisputed(d: SettledDispute) {
    const winner = disputeWinner(d)
    s.quorum = 1
    const risk = fx.statedRisk?.([winner])
    if (risk !== undefined) s.risk = risk
    await fx.recordOutcome(winner, 'valid', false)
    const punish = (r: Replica) => r.status === 'refused' && PUNISHED_REFUSALS.has(r.error?.code ?? '')
    for (const r of s.replicas) if (punish(r)) await fx.recordOutcome(r.peer, 'refused')
    return finish('verified')
  }

  const why = signal?.aborted
    ? 'cancelled'
    : jobSignal.aborted
      ? 'deadline passed'
      : ok().length === 0
        ? 'no contributor returned a valid result'
        : `no ${s.quorum} replicas agreed within ${policy.maxAttempts} attempts`
  return finish(ok().length > 0 ? 'inconclusive' : 'failed', why)
}

/** "every eligible contributor refused (n): <peer> rejected the job (<code>): <reason>; …", bounded. */
function refusalList(rs: Replica[]): string {
  // Each message already names its peer and code (src/jobs/client.ts).
  const listed = rs.slice(0, MAX_LISTED_REFUSALS).map((r) => r.error?.message ?? `${r.peer} refused`)
  const more = rs.length > MAX_LISTED_REFUSALS ? `; and ${rs.length - MAX_LISTED_REFUSALS} more` : ''
  return `every eligible contributor refused (${rs.length}): ${listed.join('; ')}${more}`
}
