/**
 * The durable requester: runs logical jobs under a verification policy (src/jobs/quorum.ts),
 * persists every step in IndexedDB so a reloaded tab resumes, and runs each job id at most once
 * (a `persist: false` job: at most once while it runs, and it is never written).
 */

import type { CID } from 'multiformats/cid'
import type { TensorSpec } from '../models/catalog.ts'
import { JobFailedError, JobInconclusiveError, NoDirectPathError, namedError } from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { tensorsCid } from '../shared/tensor-codec.ts'
import type { JobRecord } from '../store/db.ts'
import type { VerificationPolicy } from '../trust/policy.ts'
import { buildQuorumRecord, encodeQuorumRecord } from '../trust/quorum-record.ts'
import { statedRisk } from '../trust/risk.ts'
import { quorumDispute } from './dispute.ts'
import { type JobSpec, jobRecord, NO_JOURNAL, type ProgressWriter } from './journal.ts'
import { type QuorumEffects, type QuorumState, type Replica, runQuorum } from './quorum.ts'
import type { RequesterOptions, RequesterRun as Run } from './requester-types.ts'
import { outcomeFromRecord } from './stored.ts'
import type { JobOutcome, SubmitOptions } from './types.ts'

export type { RequesterOptions } from './requester-types.ts'
export type { JobOutcome, SubmitOptions } from './types.ts'

/** Marks an error drive() threw after recording the job's end state. */
const FINAL = Symbol('final')

/** The requester's jobs in this page. */
interface Jobs {
  o: RequesterOptions
  running: Map<string, Promise<JobOutcome>>
  /** Stored jobs still in their quorum loop: ends still to come. */
  computing: number
  /** Caller ids being looked up. */
  opening: Map<string, Promise<JobOutcome>>
}

export function createRequester(o: RequesterOptions) {
  const jobs: Jobs = { o, running: new Map(), computing: 0, opening: new Map() }
  /** Picks up jobs a previous page left unfinished (all, or the given ids). */
  const resume = (ids?: string[]): Promise<JobOutcome[]> => resumeJobs(jobs, ids)

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
      const live = jobs.running.get(id) ?? jobs.opening.get(id)
      if (live) return live
      const p = open(jobs, id, model, modelName, policy, inputs, opts)
      if (opts.id) {
        jobs.opening.set(id, p)
        p.finally(() => jobs.opening.delete(id)).catch(() => {})
      }
      return p
    },

    resume,

    running: () => [...jobs.running.keys()],
    /** Jobs a previous page left unfinished carry on (in the background), each at most once. */
    start() {
      resume().catch((err) => o.log.error('resume: %s', (err as Error).message))
    },
    /** Closes idle job streams. */
    stop: () => o.dispatcher.close(),
  }
}

async function drive(jobs: Jobs, run: Run): Promise<JobOutcome> {
  const { o } = jobs
  const { id, spec: job, q, inputs, durable, journal, signal } = run
  const policy = job.policy
  const late = lateRecord(o, run)
  // A job whose submit write failed is not on record: stop it rather than compute for nothing.
  const unrecorded = new AbortController()
  durable.catch((err: Error) => unrecorded.abort(err))
  const jobSignal = signal ? AbortSignal.any([signal, unrecorded.signal]) : unrecorded.signal
  const outputs = o.outputsOf(job.model)
  const inputCid = tensorsCid(inputs) // once per job, not per replica
  inputCid.catch(() => {})
  const progress = journal.progress(id, job, q)
  const counted = journal.durable // its end will write: others may hold theirs for it
  if (counted) jobs.computing++
  try {
    const fx = quorumEffects(o, run, { outputs, inputCid, progress, lateEnded: late.refresh })
    await runQuorum(q, policy, fx, job.createdAt + policy.deadlineMs, jobSignal)
  } finally {
    await progress.close()
    if (counted) jobs.computing--
  }
  const rec = jobRecord(id, job, q)
  const agreeing = q.replicas.filter((r) => r.status === 'ok' && rec.workers?.includes(r.peer))
  if (q.state === 'verified' && agreeing.length > 0) return endVerified(jobs, run, rec, agreeing, late)
  await endJob(jobs, run, rec)
  throw endError(run)
}

/** What runQuorum needs of the job's effects, besides the requester's options. */
interface EffectsOf {
  outputs: TensorSpec[] | undefined
  inputCid: Promise<CID>
  progress: ProgressWriter
  lateEnded: () => void
}

/** The network, scheduler, reputation and journal, as one job's quorum loop sees them. */
function quorumEffects(o: RequesterOptions, run: Run, e: EffectsOf): QuorumEffects {
  const { spec: job, inputs } = run
  const policy = job.policy
  return {
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
      o.dispatcher.send(job.model, inputs, e.inputCid, peer, job.timeoutMs ?? timeoutMs, sig, {
        trace: policy.traceJobs === true && policy.dispute !== false,
        pinned: job.target != null,
      }),
    singleReplicaOk: (peer) => o.adaptive.singleReplicaOk(peer),
    suspicious: (r) => o.adaptive.suspicious(r, e.outputs),
    // Reputation is in memory at once; its write need not hold up the job.
    recordOutcome: async (peer, outcome, checked) => {
      o.reputation.record(peer, outcome, checked).catch((err) => o.log.error('reputation: %s', err.message))
    },
    sameClass: (a, b) => {
      const ca = o.scheduler.classOf(a)
      return ca === undefined || ca === o.scheduler.classOf(b)
    },
    save: async () => e.progress.mark(),
    lateEnded: e.lateEnded,
    ...(o.disputer
      ? {
          dispute: (a, b, sig) =>
            o.disputer!.dispute({ model: job.model, inputs, compare: policy.compare }, a, b, sig),
        }
      : {}),
    // This tab's own worker is not a stranger: a result it agreed with carries no stranger's risk.
    statedRisk: (peers) => (peers.includes(o.selfId) ? 0 : statedRisk(peers.map((p) => o.reputation.get(p)))),
  }
}

/** The visible record follows replicas that end after the verdict (their status only). */
function lateRecord(o: RequesterOptions, { id, spec, q, journal }: Run) {
  let ended: Promise<JobRecord> | undefined // the final record, once written
  return {
    ended: (rec: JobRecord) => {
      ended = Promise.resolve(rec)
    },
    refresh: () => {
      if (!ended) return
      ended = ended.then(async (rec) => {
        const next = { ...rec, replicas: jobRecord(id, spec, q).replicas }
        await journal.put(next).catch((err: Error) => o.log.error('job %s: %s', id, err.message))
        return next
      })
    },
  }
}

/**
 * The end write replaces a submit write still held back: both land in one commit. While other
 * stored jobs still compute (their ends to come), it waits up to END_HOLD_MS to share theirs.
 */
const endJob = (jobs: Jobs, { journal, durable }: Run, final: JobRecord) =>
  Promise.all([journal.end(final, jobs.computing > 0 ? END_HOLD_MS : 0), durable])

/** Records a verified job with its quorum record, and teaches adaptive replication its results. */
async function endVerified(
  jobs: Jobs,
  run: Run,
  rec: JobRecord,
  agreeing: Replica[],
  late: ReturnType<typeof lateRecord>,
): Promise<JobOutcome> {
  const { id, spec, q } = run
  const members = agreeing.map((r) => ({ receipt: r.result!.receipt, outputs: r.result!.outputs }))
  rec.record = encodeQuorumRecord(buildQuorumRecord(members, q.quorum, spec.policy.compare, quorumDispute(q)))
  await endJob(jobs, run, rec)
  late.ended(rec)
  if (rec.replicas?.some((r, i) => r.status !== q.replicas[i]?.status)) late.refresh()
  for (const r of agreeing) jobs.o.adaptive.observe({ ...r.result!, worker: r.peer })
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

/** The error a job that did not verify ends with (its end state already recorded). */
function endError({ id, spec: job, q }: Run): Error {
  // Every contributor refused (a named target's refusal included): the refusals are the clearest
  // error, typed as a refusal with the first one's code. A target's other failure keeps its name.
  const refusals = q.replicas.filter((r) => r.status === 'refused')
  const targetError = job.target ? q.replicas.find((r) => r.error)?.error : undefined
  if (q.state === 'failed' && (refusals.length > 0 || targetError)) {
    const first = refusals[0]?.error ?? targetError!
    const message = refusals.length > 0 ? `job ${id}: ${q.reason}` : first.message
    // Of its own class (JobRejectedError for refusals), never a renamed JobFailedError.
    const err = namedError(first.name, message)
    return Object.assign(err, { ...(first.code ? { code: first.code } : {}), [FINAL]: true })
  }
  if (q.state === 'failed' && q.reason?.startsWith('no direct path')) {
    return Object.assign(new NoDirectPathError(`job ${id}: ${q.reason}`), { [FINAL]: true })
  }
  const lastError = [...q.replicas].reverse().find((r) => r.error)?.error
  const detail = lastError ? ` (last error ${lastError.name}: ${lastError.message})` : ''
  if (q.state === 'inconclusive') return new JobInconclusiveError(`job ${id}: ${q.reason}${detail}`)
  return new JobFailedError(`job ${id}: ${q.reason}${detail}`)
}

function start(jobs: Jobs, run: Run): Promise<JobOutcome> {
  const { id, spec, q, journal } = run
  const p = drive(jobs, run)
    .catch(async (err: Error) => {
      // Our own errors carry the job's end state already; anything else must still end the job.
      if (
        err.name === 'JobFailedError' ||
        err.name === 'JobInconclusiveError' ||
        (err as { [FINAL]?: boolean })[FINAL]
      ) {
        throw err
      }
      jobs.o.log.error('job %s: %s', id, err.message)
      const rec = jobRecord(id, spec, { ...q, state: 'failed', reason: `internal: ${err.message}` })
      await journal.end(rec, 0)
      throw new JobFailedError(`job ${id}: internal error: ${err.message}`)
    })
    .finally(() => {
      if (jobs.running.get(id) === p) jobs.running.delete(id)
    })
  jobs.running.set(id, p)
  return p
}

/** submit() past its duplicate check: looks up a caller's own id, else starts the job. */
async function open(
  jobs: Jobs,
  id: string,
  model: string,
  modelName: string,
  policy: VerificationPolicy,
  inputs: NamedTensors,
  opts: SubmitOptions,
): Promise<JobOutcome> {
  const stored = jobs.o.journal
  // Only a caller's own id can name an earlier job: a fresh UUID needs no lookup.
  const existing = opts.id ? await stored.get(id) : undefined
  if (existing?.status && existing.status !== 'running') return outcomeOf(existing)
  if (existing) {
    // Resumed meanwhile (the page's own resume at start): that run's outcome. If resuming ends
    // it without one, its final record says why.
    const live = jobs.running.get(id)
    if (live) return live
    return (
      (await resumeJobs(jobs, [id]))[0] ??
      jobs.running.get(id) ??
      outcomeOf((await stored.get(id)) ?? existing)
    )
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
  return start(jobs, {
    id,
    spec,
    q,
    inputs,
    durable,
    journal,
    ...(opts.signal ? { signal: opts.signal } : {}),
  })
}

/** Picks up jobs a previous page left unfinished (all, or the given ids). */
async function resumeJobs(jobs: Jobs, ids?: string[]): Promise<JobOutcome[]> {
  const { o, running } = jobs
  const stored = o.journal
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
      return await start(jobs, { id, spec, q, inputs, durable: Promise.resolve(), journal: stored })
    } catch (err) {
      o.log('resumed job %s ended: %s', id, (err as Error).message)
      return undefined
    }
  })
  return (await Promise.all(started)).filter((x): x is JobOutcome => x != null)
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
