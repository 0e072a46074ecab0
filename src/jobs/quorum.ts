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

/** 'lost': in flight when the page went away; 'busy': refused for capacity. Neither counts as an attempt. */
export type ReplicaStatus = 'dispatched' | 'ok' | 'failed' | 'timedOut' | 'forged' | 'lost' | 'busy'

export interface Replica {
  peer: string
  status: ReplicaStatus
  startedAt: number
  endedAt?: number
  /** Present when status is 'ok'. */
  result?: { job: string; outputs: NamedTensors; receipt: Receipt; outputCid: string; roundTripMs: number }
  error?: { name: string; message: string; code?: string }
}

export type FinalState = 'verified' | 'failed' | 'inconclusive'

export interface QuorumState {
  replicas: Replica[]
  /** Replication chosen for this job: the policy's, or 1 for an adaptive single replica. */
  target: number
  quorum: number
  adaptiveSingle: boolean
  state?: FinalState
  reason?: string
}

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
  /** Resolves when capacity may have changed (a peer appeared or a slot freed), and at least every second. */
  capacityChanged(signal: AbortSignal): Promise<void>
  dispatch(peer: string, timeoutMs: number, signal: AbortSignal): Promise<DispatchResult>
  /** Adaptive replication: may this job run on this single trusted peer alone? */
  singleReplicaOk(peer: string): boolean
  /** A result that looks wrong without comparing (non-finite, wrong shape, too fast): replicate it. */
  suspicious(result: DispatchResult): boolean
  recordOutcome(peer: string, outcome: Outcome): Promise<void>
  /** Persist after every change, so a reload resumes here. */
  save(state: QuorumState): Promise<void>
  /** A replica left running past the verdict has ended and been judged (its status is final). */
  lateEnded?(): void
}

const FINAL_CODES = new Set(['bad-request', 'too-large', 'bad-signature', 'unknown-model'])
const FORGERY = new Set([
  'InvalidSignatureError',
  'InvalidReceiptError',
  'OutputMismatchError',
  'MalformedFrameError',
])

function classify(err: Error & { code?: string }): ReplicaStatus {
  if (err.code === 'busy') return 'busy'
  if (err.name === 'JobTimeoutError') return 'timedOut'
  if (FORGERY.has(err.name)) return 'forged'
  return 'failed'
}

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
  let finalReject: Replica | undefined

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
  const counts = (r: Replica) => r.status !== 'lost' && r.status !== 'busy'
  const attempts = () => s.replicas.filter(counts).length
  const ok = () => s.replicas.filter((r) => r.status === 'ok')
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
          rep.status = classify(err)
          rep.error = { name: err.name, message: err.message, ...(err.code ? { code: err.code } : {}) }
          if (err.code && FINAL_CODES.has(err.code)) finalReject ??= rep
        },
      )
      .then(async () => {
        rep.endedAt = Date.now()
        inflight.delete(rep)
        if (rep.status === 'timedOut') await fx.recordOutcome(peer, 'timedOut')
        if (rep.status === 'forged') await fx.recordOutcome(peer, 'invalid')
        if (rep.status === 'busy') await new Promise((r) => setTimeout(r, 100)) // let its advert catch up
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

  while (!finalReject && best() < s.quorum) {
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
      const used = new Set(s.replicas.filter(counts).map((r) => r.peer))
      const committed = new Set(
        s.replicas.filter((r) => ['ok', 'dispatched', 'forged'].includes(r.status)).map((r) => r.peer),
      )
      const sameClass = policy.compare.kind === 'exact' ? ok().map((r) => r.peer) : []
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
    // Nobody free for the next replica: wait for capacity, up to the deadline.
    await fx.capacityChanged(jobSignal).catch(() => {})
  }

  if (finalReject) return finish('failed', `${finalReject.error?.code}: ${finalReject.error?.message}`)
  const g = groups()
  if ((g[0]?.length ?? 0) >= s.quorum) {
    // With a quorum agreeing, every replica outside it is wrong (without one, nothing is proven).
    for (const m of g[0]!) await fx.recordOutcome(m.r.peer, 'valid')
    for (const other of g.slice(1)) for (const m of other) await fx.recordOutcome(m.r.peer, 'invalid')
    const agreed = g[0]!
    for (const [rep, p] of inflight) {
      void p.then(async () => {
        // Forged and timed-out replicas were recorded as they ended.
        if (rep.status === 'ok') {
          const late = { r: rep, outputs: rep.result!.outputs, outputCid: rep.result!.outputCid }
          const joins = agreementGroups([...agreed, late], policy.compare)[0]!.includes(late)
          await fx.recordOutcome(rep.peer, joins ? 'valid' : 'invalid')
        }
        fx.lateEnded?.()
      })
    }
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
