/**
 * The durable requester: runs logical jobs under a verification policy (src/jobs/quorum.ts),
 * persists every step in IndexedDB so a reloaded tab resumes, and runs each job id at most once
 * (a `persist: false` job: at most once while it runs, and it is never written).
 */

import type { Logger } from '@libp2p/interface'
import { JobFailedError, JobInconclusiveError, NoDirectPathError, namedError } from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { tensorsCid } from '../shared/tensor-codec.ts'
import type { JobRecord } from '../store/db.ts'
import type { VerificationPolicy } from '../trust/policy.ts'
import { buildQuorumRecord, encodeQuorumRecord } from '../trust/quorum-record.ts'
import type { Reputation } from '../trust/reputation.ts'
import { statedRisk } from '../trust/risk.ts'
import type { Adaptive } from './adaptive.ts'
import type { Dispatcher } from './dispatch.ts'
import { type Disputer, quorumDispute } from './dispute.ts'
import { type JobSpec, type Journal, jobRecord, NO_JOURNAL } from './journal.ts'
import { type QuorumState, runQuorum } from './quorum.ts'
import type { Scheduler } from './scheduler.ts'
import { outcomeFromRecord } from './stored.ts'
import type { JobOutcome, SubmitOptions } from './types.ts'

export type { JobOutcome, SubmitOptions } from './types.ts'

/** Marks an error drive() threw after recording the job's end state. */
const FINAL = Symbol('final')

export interface RequesterOptions {
  /** Sends one replica to a contributor or to our own worker (createDispatcher). */
  dispatcher: Dispatcher
  /** Settles 1–1 disagreements by dispute (createDisputer); absent: a third replica, as before. */
  disputer?: Disputer
  selfId: string
  scheduler: Scheduler
  /** Where jobs are kept between steps (createStoreJournal); `persist: false` jobs use none. */
  journal: Journal
  reputation: Reputation
  adaptive: Adaptive
  outputsOf(model: string): import('../models/catalog.ts').TensorSpec[] | undefined
  log: Logger
  capacityChanged(signal: AbortSignal): Promise<void>
  /** Why no contributor can be linked at all (Discovery.noPath), if so. */
  noPath?(): string | undefined
}

/** One job as the requester drives it. */
interface Run {
  id: string
  spec: JobSpec
  q: QuorumState
  inputs: NamedTensors
  /** The submit write (record, pending state, inputs): the job ends only after it has landed. */
  durable: Promise<void>
  /** Where its state goes: the store, or nowhere (SubmitOptions.persist false). */
  journal: Journal
  signal?: AbortSignal
}

export function createRequester(o: RequesterOptions) {
  const running = new Map<string, Promise<JobOutcome>>()
  let computing = 0 // stored jobs still in their quorum loop: ends still to come
  const opening = new Map<string, Promise<JobOutcome>>() // caller ids being looked up
  const stored = o.journal
  const { dispatcher } = o

  async function drive({ id, spec: job, q, inputs, durable, journal, signal }: Run): Promise<JobOutcome> {
    const policy = job.policy
    let ended: Promise<JobRecord> | undefined // the final record, once written
    // The visible record follows replicas that end after the verdict (their status only).
    const refreshLate = () => {
      if (!ended) return
      ended = ended.then(async (rec) => {
        const next = { ...rec, replicas: jobRecord(id, job, q).replicas }
        await journal.put(next).catch((err: Error) => o.log.error('job %s: %s', id, err.message))
        return next
      })
    }
    // A job whose submit write failed is not on record: stop it rather than compute for nothing.
    const unrecorded = new AbortController()
    durable.catch((err: Error) => unrecorded.abort(err))
    const jobSignal = signal ? AbortSignal.any([signal, unrecorded.signal]) : unrecorded.signal
    const outputs = o.outputsOf(job.model)
    const inputCid = tensorsCid(inputs) // once per job, not per replica
    inputCid.catch(() => {})
    const progress = journal.progress(id, job, q)
    const counted = journal.durable // its end will write: others may hold theirs for it
    if (counted) computing++
    try {
      await runQuorum(
        q,
        policy,
        {
          pick: (exclude, sameClassAs) => {
            if (job.target) return exclude.has(job.target) ? undefined : job.target
            // Asked to, our own worker computes one replica: the cheapest one, with no network.
            if (policy.allowSelf && !exclude.has(o.selfId)) return o.selfId
            return o.scheduler.pick(job.model, exclude, {
              accept: o.reputation.trusted,
              proven: o.reputation.proven,
              sameClassAs,
            })?.id
          },
          eligible: (exclude) => {
            if (job.target) return exclude.has(job.target) ? 0 : 1
            const self = policy.allowSelf && !exclude.has(o.selfId) ? 1 : 0
            return self + o.scheduler.eligible(exclude, o.reputation.trusted)
          },
          noPath: () => o.noPath?.(),
          // A named target is the only contributor there will be; others may still be linking.
          refusalGraceMs: job.target ? 0 : REFUSAL_GRACE_MS,
          capacityChanged: o.capacityChanged,
          dispatch: (peer, timeoutMs, sig) =>
            dispatcher.send(job.model, inputs, inputCid, peer, job.timeoutMs ?? timeoutMs, sig),
          singleReplicaOk: (peer) => o.adaptive.singleReplicaOk(peer),
          suspicious: (r) => o.adaptive.suspicious(r, outputs),
          // Reputation is in memory at once; its write need not hold up the job.
          recordOutcome: async (peer, outcome, checked) => {
            o.reputation
              .record(peer, outcome, checked)
              .catch((err) => o.log.error('reputation: %s', err.message))
          },
          sameClass: (a, b) => {
            const ca = o.scheduler.classOf(a)
            return ca === undefined || ca === o.scheduler.classOf(b)
          },
          save: async () => progress.mark(),
          lateEnded: refreshLate,
          ...(o.disputer
            ? {
                dispute: (a, b, sig) =>
                  o.disputer!.dispute({ model: job.model, inputs, compare: policy.compare }, a, b, sig),
              }
            : {}),
          // This tab's own worker is not a stranger: a result it agreed with carries no stranger's risk.
          statedRisk: (peers) =>
            peers.includes(o.selfId) ? 0 : statedRisk(peers.map((p) => o.reputation.get(p))),
        },
        job.createdAt + policy.deadlineMs,
        jobSignal,
      )
    } finally {
      await progress.close()
      if (counted) computing--
    }
    // The end write replaces a submit write still held back: both land in one commit. While other
    // stored jobs still compute (their ends to come), it waits up to END_HOLD_MS to share theirs.
    const end = (final: JobRecord) =>
      Promise.all([journal.end(final, computing > 0 ? END_HOLD_MS : 0), durable])
    const rec = jobRecord(id, job, q)
    const agreeing = q.replicas.filter((r) => r.status === 'ok' && rec.workers?.includes(r.peer))
    if (q.state === 'verified' && agreeing.length > 0) {
      const members = agreeing.map((r) => ({ receipt: r.result!.receipt, outputs: r.result!.outputs }))
      rec.record = encodeQuorumRecord(buildQuorumRecord(members, q.quorum, policy.compare, quorumDispute(q)))
      await end(rec)
      ended = Promise.resolve(rec)
      if (rec.replicas?.some((r, i) => r.status !== q.replicas[i]?.status)) refreshLate()
      for (const r of agreeing) o.adaptive.observe({ ...r.result!, worker: r.peer })
      const first = agreeing[0]!.result!
      return {
        id,
        state: 'verified',
        outputs: first.outputs,
        worker: agreeing[0]!.peer,
        workers: agreeing.map((r) => r.peer),
        receipt: first.receipt,
        receipts: members.map((m) => m.receipt),
        job: first.job,
        ep: first.receipt.body.ep,
        runMs: first.receipt.body.timing.runUs / 1000,
        roundTripMs: first.roundTripMs,
        attempts: q.replicas.filter((r) => !['lost', 'busy', 'refused'].includes(r.status)).length,
        risk: q.risk ?? 1,
        record: rec.record,
      }
    }
    await end(rec)
    // Every contributor refused (a named target's refusal included): the refusals are the clearest
    // error, typed as a refusal with the first one's code. A target's other failure keeps its name.
    const refusals = q.replicas.filter((r) => r.status === 'refused')
    const targetError = job.target ? q.replicas.find((r) => r.error)?.error : undefined
    if (q.state === 'failed' && (refusals.length > 0 || targetError)) {
      const first = refusals[0]?.error ?? targetError!
      const message = refusals.length > 0 ? `job ${id}: ${q.reason}` : first.message
      // Of its own class (JobRejectedError for refusals), never a renamed JobFailedError.
      const err = namedError(first.name, message)
      throw Object.assign(err, { ...(first.code ? { code: first.code } : {}), [FINAL]: true })
    }
    if (q.state === 'failed' && q.reason?.startsWith('no direct path')) {
      throw Object.assign(new NoDirectPathError(`job ${id}: ${q.reason}`), { [FINAL]: true })
    }
    const lastError = [...q.replicas].reverse().find((r) => r.error)?.error
    const detail = lastError ? ` (last error ${lastError.name}: ${lastError.message})` : ''
    if (q.state === 'inconclusive') throw new JobInconclusiveError(`job ${id}: ${q.reason}${detail}`)
    throw new JobFailedError(`job ${id}: ${q.reason}${detail}`)
  }

  function start(run: Run): Promise<JobOutcome> {
    const { id, spec, q, journal } = run
    const p = drive(run)
      .catch(async (err: Error) => {
        // Our own errors carry the job's end state already; anything else must still end the job.
        if (
          err.name === 'JobFailedError' ||
          err.name === 'JobInconclusiveError' ||
          (err as { [FINAL]?: boolean })[FINAL]
        ) {
          throw err
        }
        o.log.error('job %s: %s', id, err.message)
        const rec = jobRecord(id, spec, { ...q, state: 'failed', reason: `internal: ${err.message}` })
        await journal.end(rec, 0)
        throw new JobFailedError(`job ${id}: internal error: ${err.message}`)
      })
      .finally(() => {
        if (running.get(id) === p) running.delete(id)
      })
    running.set(id, p)
    return p
  }

  /** submit() past its duplicate check: looks up a caller's own id, else starts the job. */
  async function open(
    id: string,
    model: string,
    modelName: string,
    policy: VerificationPolicy,
    inputs: NamedTensors,
    opts: SubmitOptions,
  ): Promise<JobOutcome> {
    // Only a caller's own id can name an earlier job: a fresh UUID needs no lookup.
    const existing = opts.id ? await stored.get(id) : undefined
    if (existing?.status && existing.status !== 'running') return outcomeOf(existing)
    if (existing) {
      // Resumed meanwhile (the page's own resume at start): that run's outcome. If resuming ends
      // it without one, its final record says why.
      const live = running.get(id)
      if (live) return live
      return (await resume([id]))[0] ?? running.get(id) ?? outcomeOf((await stored.get(id)) ?? existing)
    }
    const spec: JobSpec = {
      v: 1,
      model,
      modelName,
      policy: opts.peer ? { ...policy, redundancy: 1, quorum: 1, maxAttempts: 1, adaptive: false } : policy,
      createdAt: Date.now(),
      ...(opts.peer ? { target: opts.peer } : {}),
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
    }
    const q: QuorumState = {
      replicas: [],
      target: opts.peer ? 1 : policy.redundancy,
      quorum: opts.peer ? 1 : policy.quorum,
      adaptiveSingle: false,
    }
    // The pending entry, the visible record and the inputs (written once) are committed while the
    // first replica is already on its way, held back briefly: a job that ends sooner writes only
    // its end. A reload after that resumes the job; a caller's own id is written at once.
    const journal = opts.persist === false ? NO_JOURNAL : stored
    const durable = journal.begin(id, spec, q, inputs, opts.id ? 0 : SUBMIT_DEFER_MS)
    durable.catch(() => {}) // drive() awaits it and reports the failure
    // A caller's own id may come again after a reload: it must be on record before anything runs.
    if (opts.id) await durable
    return start({ id, spec, q, inputs, durable, journal, ...(opts.signal ? { signal: opts.signal } : {}) })
  }

  /** Picks up jobs a previous page left unfinished (all, or the given ids). */
  async function resume(ids?: string[]): Promise<JobOutcome[]> {
    const pending = (await stored.pending(ids)).filter((p) => !running.has(p.id))
    const started = pending.map(async ({ id, spec, q, inputs: readInputs }) => {
      try {
        // Ended before the reload, its state not yet cleaned up: finish the clean-up only.
        const rec = await stored.get(id)
        if (rec && rec.status !== 'running') {
          stored.discard(id)
          return rec.status === 'verified' ? await outcomeOf(rec) : undefined
        }
        const inputs = await readInputs()
        const live = running.get(id) // resumed meanwhile (e.g. by a submit of its id)
        if (live) return await live
        if (inputs == null) {
          await stored.end(jobRecord(id, spec, { ...q, state: 'failed', reason: 'inputs lost' }), 0)
          throw new JobFailedError(`job ${id}: its inputs are missing`)
        }
        return await start({ id, spec, q, inputs, durable: Promise.resolve(), journal: stored })
      } catch (err) {
        o.log('resumed job %s ended: %s', id, (err as Error).message)
        return undefined
      }
    })
    return (await Promise.all(started)).filter((x): x is JobOutcome => x != null)
  }

  return {
    submit(
      model: string,
      modelName: string,
      policy: VerificationPolicy,
      inputs: NamedTensors,
      opts: SubmitOptions = {},
    ): Promise<JobOutcome> {
      const id = opts.id ?? crypto.randomUUID()
      // A second submit of an id gets the first one's outcome, even while the first looks it up.
      const live = running.get(id) ?? opening.get(id)
      if (live) return live
      const p = open(id, model, modelName, policy, inputs, opts)
      if (opts.id) {
        opening.set(id, p)
        p.finally(() => opening.delete(id)).catch(() => {})
      }
      return p
    },

    resume,

    running: () => [...running.keys()],
    /** Jobs a previous page left unfinished carry on (in the background), each at most once. */
    start() {
      resume().catch((err) => o.log.error('resume: %s', (err as Error).message))
    },
    /** Closes idle job streams. */
    stop: () => dispatcher.close(),
  }
}

/** Once every eligible contributor refused a job, it waits this long for another before failing. */
const REFUSAL_GRACE_MS = 2000

/** A new job is on record this long after submit at the latest (sooner if it ends sooner). */
const SUBMIT_DEFER_MS = 200

/**
 * A job's end waits up to this long for other jobs' ends to share its commit (only while other stored
 * jobs still compute): at 15 jobs/s a batch's ends take about 0.4 commits per job instead of one.
 * Its outcome comes that much later.
 */
const END_HOLD_MS = 100

/** The outcome of a job finished earlier (e.g. before a reload), rebuilt from its stored record. */
async function outcomeOf(rec: JobRecord): Promise<JobOutcome> {
  if (rec.status !== 'verified' || !rec.record) {
    const Err = rec.status === 'inconclusive' ? JobInconclusiveError : JobFailedError
    throw new Err(`job ${rec.id} ended ${rec.status}: ${rec.reason ?? ''}`)
  }
  return outcomeFromRecord(rec)
}
