/**
 * Runs one logical job to a named end state under a verification policy: dispatch replicas to
 * distinct contributors, reissue on timeout / disconnect / rejection, add replicas on disagreement,
 * and accept once `quorum` replicas agree. Effects (network, storage, clock) are injected.
 */
import { agreementGroups, outputsAgree } from '../trust/compare.ts'
import type { VerificationPolicy } from '../trust/policy.ts'
import { classifyFailure, type FailureKind, PUNISHED_REFUSALS } from './failure.ts'
import { MAX_REASON_LENGTH } from './messages.ts'
import {
  type DisputeSide,
  disputeWinner,
  type FinalState,
  type QuorumEffects,
  type QuorumState,
  type Replica,
  type ReplicaStatus,
  type SettledDispute,
} from './quorum-types.ts'

export type {
  DispatchResult,
  DisputeOutcome,
  DisputeSide,
  FinalState,
  QuorumEffects,
  QuorumState,
  Replica,
  ReplicaStatus,
  SettledDispute,
} from './quorum-types.ts'
export { disputeWinner } from './quorum-types.ts'

const STATUS: Record<FailureKind, ReplicaStatus> = {
  busy: 'busy',
  refused: 'refused',
  timedOut: 'timedOut',
  forged: 'forged',
  transport: 'failed',
}

/** Refusals listed in a job's failure reason, each reason already cut to MAX_REASON_LENGTH. */
const MAX_LISTED_REFUSALS = 8

/** One runQuorum call: its inputs, its signals and the replicas it has in flight. */
interface Run {
  s: QuorumState
  policy: VerificationPolicy
  fx: QuorumEffects
  deadline: number
  /** The caller's signal: its abort is a cancel, not a deadline. */
  signal?: AbortSignal
  /** The deadline or the caller's signal. */
  jobSignal: AbortSignal
  /** Aborted once the job ends failed or inconclusive. */
  decided: AbortController
  dispatchSignal: AbortSignal
  /** Resolves when jobSignal aborts. */
  timedOut: Promise<void>
  inflight: Map<Replica, Promise<void>>
  /**
   * The loop saves only what changed since the state it was given (on record already) or its last
   * save: a job waiting for capacity wakes at every change of anyone's capacity, and rewriting its
   * unchanged state each time cost a batch several writes per job. Replicas that end save on their own.
   */
  changed: boolean
  /** fx.dispute was asked already (once per job). */
  disputed: boolean
}

/** Resumes or starts the job; resolves with the final state (also stored in `s.state`). */
export async function runQuorum(
  s: QuorumState,
  policy: VerificationPolicy,
  fx: QuorumEffects,
  deadline: number,
  signal?: AbortSignal,
): Promise<QuorumState> {
  const run = openRun(s, policy, fx, deadline, signal)
  const { jobSignal, inflight } = run
  let allRefusedSince: number | undefined
  let noPath: string | undefined

  // A lone adaptive result that looks wrong meets its quorum of 1 but must not end the job.
  while (!s.dispute?.alone && (best(run) < s.quorum || (s.adaptiveSingle && doubtful(run)))) {
    const pair = run.disputed || jobSignal.aborted ? undefined : disputable(run)
    if (pair) {
      await settleByDispute(run, pair)
      if (s.dispute?.alone) break
    }
    // A single trusted replica that forged a receipt or looks wrong escalates to the full policy.
    if (s.adaptiveSingle && doubtful(run)) escalate(run)
    launchWanted(run)
    if (run.changed) {
      run.changed = false
      await fx.save(s)
    }
    if (jobSignal.aborted) break
    if (inflight.size > 0) {
      await Promise.race([...inflight.values(), run.timedOut])
      continue
    }
    if (wanted(run) === 0 || attempts(s) >= policy.maxAttempts) break
    // Contributors exist but none can be linked: say so now, not at the deadline.
    noPath = ok(s).length === 0 ? fx.noPath?.() : undefined
    if (noPath) break
    if (allRefused(run)) {
      allRefusedSince ??= Date.now()
      if (Date.now() - allRefusedSince >= (fx.refusalGraceMs ?? 0)) break
    } else allRefusedSince = undefined
    // Nobody free for the next replica: wait for capacity, up to the deadline.
    await fx.capacityChanged(jobSignal).catch(() => {})
  }

  if (s.dispute?.alone) return acceptDisputed(run, s.dispute)
  if (!jobSignal.aborted && inflight.size === 0 && best(run) < s.quorum) {
    if (noPath) return finish(run, 'failed', noPath)
    if (allRefused(run)) return finish(run, 'failed', refusalList(refused(s)))
  }
  const g = groups(run)
  if ((g[0]?.length ?? 0) >= s.quorum) return acceptVerified(run, g)
  const why = failureReason(run)
  return finish(run, ok(s).length > 0 ? 'inconclusive' : 'failed', why)
}

function openRun(
  s: QuorumState,
  policy: VerificationPolicy,
  fx: QuorumEffects,
  deadline: number,
  signal?: AbortSignal,
): Run {
  const jobSignal = AbortSignal.any([
    AbortSignal.timeout(Math.max(0, deadline - Date.now())),
    ...(signal ? [signal] : []),
  ])
  // Once failed or inconclusive, replicas still running are cancelled. Once verified, they are left
  // to finish and judged against the result (as BOINC validates late results): a liar that is always
  // last must not escape judgement by being cancelled.
  const decided = new AbortController()
  const run: Run = {
    s,
    policy,
    fx,
    deadline,
    signal,
    jobSignal,
    decided,
    dispatchSignal: AbortSignal.any([jobSignal, decided.signal]),
    timedOut: new Promise<void>((r) => jobSignal.addEventListener('abort', () => r(), { once: true })),
    inflight: new Map(),
    changed: false,
    disputed: s.dispute !== undefined,
  }
  // Replicas in flight when the page went away are lost: they do not count as attempts.
  for (const r of s.replicas) {
    if (r.status !== 'dispatched') continue
    r.status = 'lost'
    run.changed = true
  }
  return run
}

const counts = (r: Replica) => r.status !== 'lost' && r.status !== 'busy' && r.status !== 'refused'
const refused = (s: QuorumState) => s.replicas.filter((r) => r.status === 'refused')
const attempts = (s: QuorumState) => s.replicas.filter(counts).length
const ok = (s: QuorumState) => s.replicas.filter((r) => r.status === 'ok' && !r.convicted)

/** An ok replica as agreementGroups compares it. */
const member = (r: Replica) => ({ r, outputs: r.result!.outputs, outputCid: r.result!.outputCid })
type Member = ReturnType<typeof member>

/**
 * The agreement groups of ok replicas not convicted, less every group whose first member agrees
 * with a convicted result: a result a referee proved wrong makes no quorum through others that
 * agree with it (else two colluders would outvote, and punish, the side the referee upheld); they
 * are judged wrong once a quorum verifies. Groups form around their first member, so the upheld
 * side's (which disagrees with the convicted one) forms first, and a result within tolerance of
 * both joins it, not the convicted one's.
 */
export function quorumGroups(replicas: Replica[], compare: VerificationPolicy['compare']): Member[][] {
  const done = replicas.filter((r) => r.status === 'ok')
  const wrong = done.filter((r) => r.convicted).map(member)
  return agreementGroups(done.filter((r) => !r.convicted).map(member), compare).filter(
    (g) => !wrong.some((w) => outputsAgree(g[0]!, w, compare)),
  )
}
const groups = ({ s, policy }: Run) => quorumGroups(s.replicas, policy.compare)
const best = (run: Run) => groups(run)[0]?.length ?? 0

async function finish(run: Run, state: FinalState, reason?: string): Promise<QuorumState> {
  const { s } = run
  if (state !== 'verified') run.decided.abort()
  s.state = state
  if (reason) s.reason = reason
  await run.fx.save(s)
  return s
}

function launch(run: Run, peer: string): void {
  const { s, policy, fx, inflight } = run
  const rep: Replica = { peer, status: 'dispatched', startedAt: Date.now() }
  s.replicas.push(rep)
  run.changed = true
  const timeout = Math.min(policy.replicaTimeoutMs, Math.max(100, run.deadline - Date.now()))
  const p = fx
    .dispatch(peer, timeout, run.dispatchSignal)
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
const wanted = (run: Run) => {
  const { s, inflight } = run
  return Math.max(s.target - ok(s).length - inflight.size, s.quorum - best(run) - inflight.size, 0)
}

/** Launches replicas while more are wanted, attempts are left and a contributor is free. */
function launchWanted(run: Run): void {
  const { s, policy, fx } = run
  while (wanted(run) > 0 && attempts(s) < policy.maxAttempts) {
    // Distinct contributors first; a peer whose replica merely failed may be retried if no one else is free.
    const committed = barred(s)
    const used = new Set([...committed, ...s.replicas.filter(counts).map((r) => r.peer)])
    // Bit-exact agreement is sound only within one class: replicas sent together stay in the first's.
    const sameClass =
      policy.compare.kind === 'exact'
        ? s.replicas.filter((r) => r.status === 'ok' || r.status === 'dispatched').map((r) => r.peer)
        : []
    const peer = fx.pick(used, sameClass) ?? fx.pick(committed, sameClass)
    if (peer == null) break
    if (attempts(s) === 0 && policy.adaptive && s.target > 1 && fx.singleReplicaOk(peer)) {
      s.adaptiveSingle = true
      s.target = 1
      s.quorum = 1
    }
    launch(run, peer)
  }
}

/** A replica forged a receipt or its result looks wrong without comparing. */
const doubtful = ({ s, fx }: Run) =>
  s.replicas.some(
    (r) => r.status === 'forged' || (r.result && fx.suspicious({ ...r.result, worker: r.peer })),
  )

function escalate(run: Run): void {
  const { s, policy } = run
  run.changed = true
  s.adaptiveSingle = false
  s.escalated = true
  s.target = policy.redundancy
  s.quorum = policy.quorum
}

/** Peers a new replica must not go to: their replica stands, or they declined this job. */
const barred = (s: QuorumState) =>
  new Set(
    s.replicas.filter((r) => ['ok', 'dispatched', 'forged', 'refused'].includes(r.status)).map((r) => r.peer),
  )

/** Every contributor that could take the job refused it, and none has given a result. */
const allRefused = ({ s, fx }: Run) =>
  refused(s).length > 0 && ok(s).length === 0 && fx.eligible(barred(s)) === 0

/** Two ok replicas that disagree, one each, with nothing else running: a dispute may settle them. */
function disputable(run: Run): [Replica, Replica] | undefined {
  const { s, policy, fx } = run
  if (!fx.dispute || policy.dispute === false || s.quorum !== 2 || run.inflight.size > 0) return undefined
  const g = groups(run)
  if (g.length !== 2 || g[0]!.length !== 1 || g[1]!.length !== 1) return undefined
  const [a, b] = [g[0]![0]!.r, g[1]![0]!.r].sort((x, y) => s.replicas.indexOf(x) - s.replicas.indexOf(y))
  // The referee's bits are another runtime's: under `exact`, only peers of one class are disputed.
  if (policy.compare.kind === 'exact' && !(fx.sameClass?.(a!.peer, b!.peer) ?? true)) return undefined
  return [a!, b!]
}

/**
 * Asks fx.dispute once per job. A verdict convicts one side at the node where the two parted; it
 * does not prove the other right after that node, so the other stands alone only where adaptive
 * replication would let its worker run alone. Otherwise the loop buys a replica to agree with it.
 */
async function settleByDispute(run: Run, [a, b]: [Replica, Replica]): Promise<void> {
  const { s, policy, fx, jobSignal } = run
  run.disputed = true
  const out = await fx.dispute!(a, b, jobSignal).catch(() => undefined)
  for (const side of out?.timedOut ?? []) await fx.recordOutcome((side === 'a' ? a : b).peer, 'timedOut')
  const v = out?.verdict
  const accepted: DisputeSide | undefined =
    v === 'a-invalid' ? 'b' : v === 'b-invalid' ? 'a' : v === 'drift' ? out!.closer : undefined
  if (!accepted || !out?.record) return
  const verdict = v as SettledDispute['verdict']
  const [winner, loser] = accepted === 'a' ? [a, b] : [b, a]
  // Alone only as an adaptive single replica would be: never a result that was doubted (escalated).
  const doubted = s.escalated || fx.suspicious({ ...winner.result!, worker: winner.peer })
  const alone = policy.adaptive && !doubted && fx.singleReplicaOk(winner.peer)
  const signed = out.signed ? { signed: out.signed } : {}
  s.dispute = { verdict, accepted, peers: [a.peer, b.peer], record: out.record, ...signed, alone }
  if (verdict !== 'drift') loser.convicted = true
  // Saved before the loser is punished: a reload in between must not dispute (and punish) again.
  await fx.save(s)
  if (verdict !== 'drift') await fx.recordOutcome(loser.peer, 'invalid')
  if (jobSignal.aborted) delete s.dispute // past the deadline: the verdict stands, the job does not
}

/** A quorum agrees on g[0]: its members are valid, and every replica outside it is wrong. */
async function acceptVerified(run: Run, g: Member[][]): Promise<QuorumState> {
  const { s, policy, fx } = run
  const agreed = g[0]!
  s.agreed = agreed.map((m) => m.r.peer)
  // The risk is judged on the reputation the workers had before this job adds to it.
  const risk = fx.statedRisk?.(agreed.map((m) => m.r.peer))
  if (risk !== undefined) s.risk = risk
  // With a quorum agreeing, every replica outside it is wrong (without one, nothing is proven).
  const checked = agreed.length >= 2
  for (const m of agreed) await fx.recordOutcome(m.r.peer, 'valid', checked)
  const lead = agreed[0]!.r.peer
  // A dispute that found drift between two workers found neither lying: neither is punished now.
  const drifted: string[] = s.dispute?.verdict === 'drift' ? s.dispute.peers : []
  const judged = (peer: string) =>
    !drifted.includes(peer) && (policy.compare.kind !== 'exact' || (fx.sameClass?.(lead, peer) ?? true))
  // A dispute's evidence stays in the record only beside the result it accepted.
  if (s.dispute && !agreed.some((m) => m.r.peer === disputeWinner(s.dispute!))) delete s.dispute
  // Every other result is wrong, those that agreed with a convicted one included (in no group).
  for (const r of ok(s))
    if (!agreed.some((m) => m.r === r) && judged(r.peer)) await fx.recordOutcome(r.peer, 'invalid')
  await punishRefusals(run)
  judgeLate(run, agreed, judged)
  return finish(run, 'verified')
}

/** Replicas still running past the verdict are judged against it as they end. */
function judgeLate({ policy, fx, inflight }: Run, agreed: Member[], judged: (peer: string) => boolean): void {
  for (const [rep, p] of inflight) {
    void p.then(async () => {
      // Forged and timed-out replicas were recorded as they ended.
      if (rep.status === 'ok') {
        const late = member(rep)
        const joins = agreementGroups([...agreed, late], policy.compare)[0]!.includes(late)
        if (joins || judged(rep.peer)) await fx.recordOutcome(rep.peer, joins ? 'valid' : 'invalid', joins)
      }
      if (punished(rep, policy)) await fx.recordOutcome(rep.peer, 'refused')
      fx.lateEnded?.()
    })
  }
}

/**
 * The dispute's accepted side stands alone, as an adaptive single replica of a trusted worker
 * would: the quorum is that one result (the referee saw one node, not the whole result), its risk
 * is its worker's alone, and it is not counted as a check. The loser was punished at the verdict.
 */
async function acceptDisputed(run: Run, d: SettledDispute): Promise<QuorumState> {
  const { s, fx } = run
  const winner = disputeWinner(d)
  s.quorum = 1
  s.agreed = [winner]
  const risk = fx.statedRisk?.([winner])
  if (risk !== undefined) s.risk = risk
  await fx.recordOutcome(winner, 'valid', false)
  await punishRefusals(run)
  return finish(run, 'verified')
}

/** Others computed this job: a refusal that called it bad or unknown was wrong (DESIGN.md, Verification). */
const punished = (r: Replica, policy: VerificationPolicy) =>
  r.status === 'refused' &&
  PUNISHED_REFUSALS.has(r.error?.code ?? '') &&
  // A contributor of a version before traced jobs refuses the `trace` key as a bad request.
  !(policy.traceJobs && r.error?.code === 'bad-request')

async function punishRefusals({ s, fx, policy }: Run): Promise<void> {
  for (const r of s.replicas) if (punished(r, policy)) await fx.recordOutcome(r.peer, 'refused')
}

/** Why a job ended without a quorum. */
function failureReason({ s, policy, signal, jobSignal }: Run): string {
  if (signal?.aborted) return 'cancelled'
  if (jobSignal.aborted) return 'deadline passed'
  if (ok(s).length === 0) return 'no contributor returned a valid result'
  return `no ${s.quorum} replicas agreed within ${policy.maxAttempts} attempts`
}

/** "every eligible contributor refused (n): <peer> rejected the job (<code>): <reason>; …", bounded. */
function refusalList(rs: Replica[]): string {
  // Each message already names its peer and code (src/jobs/client.ts).
  const listed = rs.slice(0, MAX_LISTED_REFUSALS).map((r) => r.error?.message ?? `${r.peer} refused`)
  const more = rs.length > MAX_LISTED_REFUSALS ? `; and ${rs.length - MAX_LISTED_REFUSALS} more` : ''
  return `every eligible contributor refused (${rs.length}): ${listed.join('; ')}${more}`
}
