/**
 * The durable requester: runs logical jobs under a verification policy (src/jobs/quorum.ts),
 * persists every step in IndexedDB so a reloaded tab resumes, and runs each job id at most once
 * (a `persist: false` job: at most once while it runs, and it is never written).
 */
import type { Logger, PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import { type BrowserNode, directConnection } from '../net/node.ts'
import { own } from '../shared/bytes.ts'
import {
  JobFailedError,
  JobInconclusiveError,
  NoDirectPathError,
  NoPeerAvailableError,
} from '../shared/errors.ts'
import { JOB_PROTOCOL, JOB_PROTOCOL_V1 } from '../shared/protocol.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { decodeTensors, type EncodedTensors, encodeTensors, tensorsCid } from '../shared/tensor-codec.ts'
import type { JobRecord, Store } from '../store/db.ts'
import { agreementGroups } from '../trust/compare.ts'
import { type JobBody, jobCid, newNonce, signJob } from '../trust/job-sig.ts'
import type { VerificationPolicy } from '../trust/policy.ts'
import { buildQuorumRecord, encodeQuorumRecord } from '../trust/quorum-record.ts'
import { encodeReceipt, type Receipt, verifyReceipt } from '../trust/receipt.ts'
import type { Reputation } from '../trust/reputation.ts'
import type { Adaptive } from './adaptive.ts'
import { sendJob } from './client.ts'
import type { Execute } from './execute.ts'
import { isAnswered } from './failure.ts'
import { type DispatchResult, type QuorumState, runQuorum } from './quorum.ts'
import type { Scheduler } from './scheduler.ts'
import { fromStored, outcomeFromRecord, type StoredJob, toStored } from './stored.ts'
import { createStreamPool } from './stream-pool.ts'

/** Marks an error drive() threw after recording the job's end state. */
const FINAL = Symbol('final')

export interface SubmitOptions {
  /** Run on this PeerId only: one replica, no reissue. */
  peer?: string
  /**
   * Idempotency key: a job id runs at most once; submitting it again returns the same outcome
   * (with `persist: false`, only while the first submit runs: nothing is kept after it).
   */
  id?: string
  policy?: Partial<VerificationPolicy>
  /** Per-replica timeout (default: the policy's). */
  timeoutMs?: number
  signal?: AbortSignal
  /**
   * false: no record, state or inputs of the job are written to IndexedDB (the peers' reputation
   * still is). It gets no history entry and does not resume after a reload, and its `id` is known
   * only while it runs (an `id` already on record resumes or returns that job as stored). In return
   * the browser is spared the writes, the largest per-job cost outside the compute (README, Performance).
   */
  persist?: boolean
}

export interface JobOutcome {
  id: string
  state: 'verified'
  outputs: NamedTensors
  /** The first agreeing worker, and all of them. */
  worker: string
  workers: string[]
  receipt: Receipt
  receipts: Receipt[]
  /** CID of the first agreeing replica's signed job. */
  job: string
  ep: string
  runMs: number
  roundTripMs: number
  /** Replicas dispatched, counting reissues. */
  attempts: number
  /** dag-cbor quorum record, checkable offline (`npm run verify`). */
  record: Uint8Array
}

export interface RequesterOptions {
  node: BrowserNode
  privateKey: PrivateKey
  selfId: string
  scheduler: Scheduler
  store: Store
  reputation: Reputation
  adaptive: Adaptive
  /** Runs a replica in this tab's own worker (policy.allowSelf). */
  execute: Execute
  outputsOf(model: string): import('../models/catalog.ts').TensorSpec[] | undefined
  log: Logger
  capacityChanged(signal: AbortSignal): Promise<void>
  /** Why no contributor can be linked at all (Discovery.noPath), if so. */
  noPath?(): string | undefined
  /** Replaces the direct WebRTC link to `peer`: closes it and dials its advertised addresses. */
  redial(peer: string, signal: AbortSignal): Promise<void>
  onChange(): void
  /** Ended jobs' records kept (newest first); older ones are pruned now and then. */
  jobHistory: number
  /** …and at most this many bytes of them (receipts and quorum records, the outputs included). */
  jobHistoryBytes?: number
}

/** One job as the requester drives it. */
interface Run {
  id: string
  job: StoredJob
  inputs: NamedTensors
  /** The submit write (record, pending state, inputs): the job ends only after it has landed. */
  durable: Promise<void>
  /** Where its state goes: the store, or nowhere (SubmitOptions.persist false). */
  writes: JobWrites
  signal?: AbortSignal
}

/** A job's writes; each tells the page its records changed once it has landed. */
interface JobWrites {
  save(...a: Parameters<Store['saveJobState']>): Promise<void>
  put(rec: JobRecord): Promise<void>
}

const NO_WRITES: JobWrites = { save: async () => {}, put: async () => {} }

export function createRequester(o: RequesterOptions) {
  const running = new Map<string, Promise<JobOutcome>>()
  let computing = 0 // stored jobs still in their quorum loop: ends still to come
  const opening = new Map<string, Promise<JobOutcome>>() // caller ids being looked up
  // Old records go with the first ended job and then once per PRUNE_EVERY, in one transaction each.
  let endsBeforePrune = 1
  const stored: JobWrites = {
    async save(job, pending, inputs, opts) {
      await o.store.saveJobState(job, pending, inputs, opts)
      o.onChange()
      if (pending === null && --endsBeforePrune === 0) {
        endsBeforePrune = PRUNE_EVERY
        o.store
          .pruneJobs(o.jobHistory, o.jobHistoryBytes)
          .catch((err: Error) => o.log.error('pruning job records: %s', err.message))
      }
    },
    async put(rec) {
      await o.store.putJob(rec)
      o.onChange()
    },
  }
  const streams = createStreamPool({ protocols: [JOB_PROTOCOL, JOB_PROTOCOL_V1] })

  async function dispatch(
    job: StoredJob,
    inputs: NamedTensors,
    inputCid: Promise<CID>,
    peer: string,
    timeoutMs: number,
    signal: AbortSignal,
  ) {
    if (peer === o.selfId) return runLocally(job.model, inputs, await inputCid, signal)
    const id = peerIdFromString(peer)
    const connection = directConnection(o.node, id)
    if (connection == null) throw new NoPeerAvailableError(`no direct WebRTC connection to ${peer}`)
    const done = o.scheduler.begin(peer) // counted at once: concurrent picks must see it
    let held = true
    let delivered = false
    const input = await inputCid
    const send = (c: typeof connection) =>
      sendJob({
        connection: c,
        privateKey: o.privateKey,
        selfId: o.selfId,
        model: job.model,
        inputs,
        inputCid: input,
        streams,
        timeoutMs,
        signal,
      })
    try {
      const r = await send(connection)
      delivered = true
      return r
    } catch (err) {
      if ((err as { code?: string }).code === 'busy') held = false
      // Two tabs that dialled each other at once keep one connection and close the other: a job
      // caught on the closed one goes again on the survivor. Only transport failures qualify: a
      // peer's answer (reject, bad receipt, timeout) stands. A job never sent is tried up to 3 times.
      if (signal.aborted || isAnswered(err as Error)) throw err
      let last = err
      const tries = (err as Error).name === 'JobNotSentError' ? 3 : 1
      for (let i = 0; i < tries; i++) {
        await new Promise((r) => setTimeout(r, 250 * 2 ** i))
        // The same link failed to open a stream twice: have discovery replace it.
        if (i > 0 && directConnection(o.node, id) === connection) await o.redial(peer, signal).catch(() => {})
        const survivor = directConnection(o.node, id)
        if (signal.aborted || survivor == null || survivor.status !== 'open') throw last
        try {
          const r = await send(survivor)
          delivered = true
          return r
        } catch (again) {
          if ((again as Error).name !== 'JobNotSentError') throw again
          last = again
        }
      }
      throw last
    } finally {
      done(held, delivered)
    }
  }

  async function runLocally(
    model: string,
    inputs: NamedTensors,
    input: CID,
    signal: AbortSignal,
  ): Promise<DispatchResult> {
    const started = performance.now()
    const body: JobBody = {
      v: 1,
      model: CID.parse(model),
      input,
      requester: o.selfId,
      deadline: Date.now() + 60_000,
      nonce: newNonce(),
    }
    const cid = await jobCid(body)
    await signJob(body, o.privateKey)
    const r = await o.execute({ body, inputs, jobCid: cid }, o.selfId, signal)
    await verifyReceipt(r.receipt, { job: cid, output: await tensorsCid(r.outputs) })
    return {
      job: cid.toString(),
      worker: o.selfId,
      outputs: r.outputs,
      receipt: r.receipt,
      roundTripMs: performance.now() - started,
    }
  }

  async function drive({ id, job, inputs, durable, writes, signal }: Run): Promise<JobOutcome> {
    const policy = job.policy
    const q: QuorumState = fromStored(job.quorum)
    let ended: Promise<JobRecord> | undefined // the final record, once written
    // The visible record follows replicas that end after the verdict (their status only).
    const refreshLate = () => {
      if (!ended) return
      ended = ended.then(async (rec) => {
        const next = { ...rec, replicas: summary(id, job, q).replicas }
        await writes.put(next).catch((err: Error) => o.log.error('job %s: %s', id, err.message))
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
    // Progress is written behind the quorum loop, latest state only, never after the end: a stale
    // write must never resurrect a finished job's pending entry (a reload would run it twice).
    const progress = progressWriter(
      async () => {
        if (q.state) return
        job.quorum = toStored(q)
        const pending = { id, createdAt: job.createdAt, state: job }
        await writes.save(summary(id, job, q), pending, undefined, { relaxed: true })
      },
      (err) => o.log.error('job %s: progress not saved: %s', id, err.message),
    )
    const counted = writes === stored // its end will write: others may hold theirs for it
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
            dispatch(job, inputs, inputCid, peer, job.timeoutMs ?? timeoutMs, sig),
          singleReplicaOk: (peer) => o.adaptive.singleReplicaOk(peer),
          suspicious: (r) => o.adaptive.suspicious(r, outputs),
          // Reputation is in memory at once; its write need not hold up the job.
          recordOutcome: async (peer, outcome) => {
            o.reputation.record(peer, outcome).catch((err) => o.log.error('reputation: %s', err.message))
          },
          save: async () => progress.mark(),
          lateEnded: refreshLate,
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
      Promise.all([
        writes.save(final, null, undefined, { deferMs: computing > 0 ? END_HOLD_MS : 0 }),
        durable,
      ])
    const rec = summary(id, job, q)
    const agreeing = q.replicas.filter((r) => r.status === 'ok' && rec.workers?.includes(r.peer))
    if (q.state === 'verified' && agreeing.length > 0) {
      const members = agreeing.map((r) => ({ receipt: r.result!.receipt, outputs: r.result!.outputs }))
      rec.record = encodeQuorumRecord(buildQuorumRecord(members, q.quorum, policy.compare))
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
      throw Object.assign(new JobFailedError(message), {
        name: first.name,
        code: first.code,
        [FINAL]: true,
      })
    }
    if (q.state === 'failed' && q.reason?.startsWith('no direct path')) {
      throw Object.assign(new NoDirectPathError(`job ${id}: ${q.reason}`), { [FINAL]: true })
    }
    const lastError = [...q.replicas].reverse().find((r) => r.error)?.error
    const detail = lastError ? ` (last error ${lastError.name}: ${lastError.message})` : ''
    if (q.state === 'inconclusive') throw new JobInconclusiveError(`job ${id}: ${q.reason}${detail}`)
    throw new JobFailedError(`job ${id}: ${q.reason}${detail}`)
  }

  function summary(id: string, job: StoredJob, q: QuorumState): JobRecord {
    const ok = q.replicas.filter((r) => r.status === 'ok')
    const verified = q.state === 'verified'
    const workers = verified ? agreeingPeers(q, job.policy) : []
    const first = ok.find((r) => workers.includes(r.peer))?.result
    return {
      id,
      model: job.model,
      modelName: job.modelName,
      status: q.state ?? 'running',
      submittedAt: job.createdAt,
      ...(q.state ? { finishedAt: Date.now() } : {}),
      verified,
      ...(first
        ? {
            worker: workers[0]!,
            ep: first.receipt.body.ep,
            roundTripMs: first.roundTripMs,
            runMs: first.receipt.body.timing.runUs / 1000,
            receipt: encodeReceipt(first.receipt),
            outputCid: first.outputCid,
            jobCid: first.job,
          }
        : {}),
      ...(q.reason ? { reason: q.reason } : {}),
      replicas: q.replicas.map((r) => ({
        peer: r.peer,
        status: r.status,
        ...(r.result ? { ms: r.result.roundTripMs } : {}),
        ...(r.error ? { error: `${r.error.name}: ${r.error.message}` } : {}),
      })),
      workers,
      quorum: q.quorum,
      ...(q.busy ? { busy: q.busy } : {}),
    }
  }

  function start(run: Run): Promise<JobOutcome> {
    const { id, job, writes } = run
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
        const rec = summary(id, job, {
          ...fromStored(job.quorum),
          state: 'failed',
          reason: `internal: ${err.message}`,
        })
        await writes.save(rec, null)
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
    const existing = opts.id ? await o.store.getJob(id) : undefined
    if (existing?.status && existing.status !== 'running') return outcomeOf(existing)
    if (existing) {
      // Resumed meanwhile (the page's own resume at start): that run's outcome. If resuming ends
      // it without one, its final record says why.
      const live = running.get(id)
      if (live) return live
      return (await resume([id]))[0] ?? running.get(id) ?? outcomeOf((await o.store.getJob(id)) ?? existing)
    }
    const job: StoredJob = {
      v: 1,
      model,
      modelName,
      policy: opts.peer ? { ...policy, redundancy: 1, quorum: 1, maxAttempts: 1, adaptive: false } : policy,
      createdAt: Date.now(),
      quorum: toStored({
        replicas: [],
        target: opts.peer ? 1 : policy.redundancy,
        quorum: opts.peer ? 1 : policy.quorum,
        adaptiveSingle: false,
      }),
      ...(opts.peer ? { target: opts.peer } : {}),
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
    }
    // The pending entry, the visible record and the inputs (written once) are committed while the
    // first replica is already on its way, held back briefly: a job that ends sooner writes only
    // its end. A reload after that resumes the job; a caller's own id is written at once.
    const writes = opts.persist === false ? NO_WRITES : stored
    const durable =
      writes === stored
        ? stored.save(
            summary(id, job, fromStored(job.quorum)),
            { id, createdAt: job.createdAt, state: job },
            { id, inputs: ownedTensors(inputs) },
            { deferMs: opts.id ? 0 : SUBMIT_DEFER_MS },
          )
        : Promise.resolve() // nothing to encode for a job never written
    durable.catch(() => {}) // drive() awaits it and reports the failure
    // A caller's own id may come again after a reload: it must be on record before anything runs.
    if (opts.id) await durable
    return start({ id, job, inputs, durable, writes, ...(opts.signal ? { signal: opts.signal } : {}) })
  }

  /** Picks up jobs a previous page left unfinished (all, or the given ids). */
  async function resume(ids?: string[]): Promise<JobOutcome[]> {
    const pending = (await o.store.listPending()).filter((p) => !ids || ids.includes(p.id))
    const started = pending
      .filter((p) => !running.has(p.id))
      .map(async (p) => {
        const job = p.state as StoredJob
        try {
          // Ended before the reload, its state not yet cleaned up: finish the clean-up only.
          const rec = await o.store.getJob(p.id)
          if (rec && rec.status !== 'running') {
            o.store.discardJobState(p.id)
            return rec.status === 'verified' ? await outcomeOf(rec) : undefined
          }
          // Schema 2 kept the inputs inside the pending state.
          const encoded = job.inputs ?? (await o.store.getJobInputs(p.id))?.inputs
          const live = running.get(p.id) // resumed meanwhile (e.g. by a submit of its id)
          if (live) return await live
          if (encoded == null) {
            const rec = summary(p.id, job, {
              ...fromStored(job.quorum),
              state: 'failed',
              reason: 'inputs lost',
            })
            await stored.save(rec, null)
            throw new JobFailedError(`job ${p.id}: its inputs are missing`)
          }
          const inputs = decodeTensors(encoded as EncodedTensors, { maxElements: Number.POSITIVE_INFINITY }) // our own inputs
          return await start({ id: p.id, job, inputs, durable: Promise.resolve(), writes: stored })
        } catch (err) {
          o.log('resumed job %s ended: %s', p.id, (err as Error).message)
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
    /** Closes idle job streams (at stop). */
    close: () => streams.clear(),
  }
}

/** Encoded inputs to store: views of a caller's larger buffers are copied (`own`). */
function ownedTensors(inputs: NamedTensors): EncodedTensors {
  const out = encodeTensors(inputs)
  for (const t of Object.values(out)) t.data = own(t.data)
  return out
}

/** Once every eligible contributor refused a job, it waits this long for another before failing. */
const REFUSAL_GRACE_MS = 2000

/** Ended jobs between two prunes of old job records. */
const PRUNE_EVERY = 100

/** A new job is on record this long after submit at the latest (sooner if it ends sooner). */
const SUBMIT_DEFER_MS = 200

/**
 * A job's end waits up to this long for other jobs' ends to share its commit (only while other stored
 * jobs still compute): at 15 jobs/s a batch's ends take about 0.4 commits per job instead of one.
 * Its outcome comes that much later.
 */
const END_HOLD_MS = 100

/** Progress of a job still running this long after a change is written; a quicker job writes none. */
const PROGRESS_DELAY_MS = 1000

/**
 * Runs `write` behind the caller: one write at a time, always of the latest state (marks made while
 * one is waiting collapse into it), a little later, so that a job ending meanwhile skips it. A reload
 * in between loses only progress, never the job: its inputs and pending entry are written at submit.
 */
function progressWriter(write: () => Promise<void>, onError: (err: Error) => void) {
  let dirty = false
  let closed = false
  let timer: ReturnType<typeof setTimeout> | undefined
  let chain = Promise.resolve()
  const flush = () => {
    timer = undefined
    chain = chain.then(async () => {
      if (closed || !dirty) return
      dirty = false
      await write().catch(onError)
    })
  }
  return {
    mark() {
      if (closed) return
      dirty = true
      timer ??= setTimeout(flush, PROGRESS_DELAY_MS)
    },
    /** No write starts after this; resolves once the one running (if any) is done. */
    async close() {
      closed = true
      clearTimeout(timer)
      await chain
    },
  }
}

/** The largest group of agreeing ok replicas under the policy's rule. */
function agreeingPeers(q: QuorumState, policy: VerificationPolicy): string[] {
  const ok = q.replicas.filter((r) => r.status === 'ok')
  const g = agreementGroups(
    ok.map((r) => ({ r, outputs: r.result!.outputs, outputCid: r.result!.outputCid })),
    policy.compare,
  )
  return (g[0] ?? []).map((m) => m.r.peer)
}

/** The outcome of a job finished earlier (e.g. before a reload), rebuilt from its stored record. */
async function outcomeOf(rec: JobRecord): Promise<JobOutcome> {
  if (rec.status !== 'verified' || !rec.record) {
    const Err = rec.status === 'inconclusive' ? JobInconclusiveError : JobFailedError
    throw new Err(`job ${rec.id} ended ${rec.status}: ${rec.reason ?? ''}`)
  }
  return outcomeFromRecord(rec)
}
