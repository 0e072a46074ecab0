/**
 * Where a requester's jobs are kept between steps, and when: the only place that knows their stored
 * form. The requester hands it in-memory state; the IndexedDB journal encodes it, holds writes back
 * so that quick jobs write once, and prunes old records. A `persist: false` job uses the no-op one.
 * A Node requester implements the same interface over its own storage.
 */
import type { Logger } from '@libp2p/interface'
import { own } from '../shared/bytes.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { decodeTensors, type EncodedTensors, encodeTensors } from '../shared/tensor-codec.ts'
import type { JobRecord, Store } from '../store/db.ts'
import type { VerificationPolicy } from '../trust/policy.ts'
import { encodeReceipt } from '../trust/receipt.ts'
import { disputeWinner, type QuorumState, quorumGroups } from './quorum.ts'
import { fromStored, type StoredJob, toStored } from './stored.ts'

/** A job as submitted: everything but its progress. */
export type JobSpec = Omit<StoredJob, 'quorum' | 'inputs'>

export interface PendingJob {
  id: string
  spec: JobSpec
  q: QuorumState
  /** Read only when the job is run again; undefined when they were lost. */
  inputs(): Promise<NamedTensors | undefined>
}

export interface ProgressWriter {
  /** The state changed: written a little later, latest state only. */
  mark(): void
  /** No write starts after this; resolves once the one running (if any) is done. */
  close(): Promise<void>
}

export interface Journal {
  /** Writes reach storage: a job's end then costs a write that others may share. */
  readonly durable: boolean
  /** A new job's record, resumable state and inputs, committed within `deferMs` or with its end. */
  begin(id: string, spec: JobSpec, q: QuorumState, inputs: NamedTensors, deferMs: number): Promise<void>
  /** Progress written behind the quorum loop, never after close(): a stale write must not resurrect a pending entry. */
  progress(id: string, spec: JobSpec, q: QuorumState): ProgressWriter
  /** The job's final record; its pending state and inputs go. Held up to `holdMs` to share a commit. */
  end(rec: JobRecord, holdMs: number): Promise<void>
  /** The visible record again (replicas that ended after the verdict); nothing else changes. */
  put(rec: JobRecord): Promise<void>
  get(id: string): Promise<JobRecord | undefined>
  /** Jobs a previous page left unfinished (all, or these ids). */
  pending(ids?: string[]): Promise<PendingJob[]>
  /** Drops the pending state of a job that had ended (the page went before the clean-up). */
  discard(id: string): void
}

/** The visible record of a job in its current state. */
export function jobRecord(id: string, spec: JobSpec, q: QuorumState): JobRecord {
  const ok = q.replicas.filter((r) => r.status === 'ok')
  const verified = q.state === 'verified'
  const workers = verified ? agreeingPeers(q, spec.policy) : []
  const first = ok.find((r) => workers.includes(r.peer))?.result
  return {
    id,
    model: spec.model,
    modelName: spec.modelName,
    status: q.state ?? 'running',
    submittedAt: spec.createdAt,
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
    policy: spec.policy,
    ...(q.risk !== undefined ? { risk: q.risk } : {}),
    replicas: q.replicas.map((r) => ({
      peer: r.peer,
      status: r.status,
      ...(r.result ? { ms: r.result.roundTripMs } : {}),
      ...(r.error ? { error: `${r.error.name}: ${r.error.message}` } : {}),
      ...(r.convicted ? { convicted: true } : {}),
    })),
    workers,
    quorum: q.quorum,
    ...(q.busy ? { busy: q.busy } : {}),
  }
}

/** The workers of the accepted result: as runQuorum found them, or (states stored before) recomputed. */
export function agreeingPeers(q: QuorumState, policy: VerificationPolicy): string[] {
  if (q.agreed) return q.agreed
  // Settled alone by dispute: the side the referee confirmed, never the first of two groups of one.
  if (q.dispute?.alone) return [disputeWinner(q.dispute)]
  return (quorumGroups(q.replicas, policy.compare)[0] ?? []).map((m) => m.r.peer)
}

const NOOP_PROGRESS: ProgressWriter = { mark() {}, close: async () => {} }

/** Writes nothing: `persist: false` jobs. */
export const NO_JOURNAL: Journal = {
  durable: false,
  begin: async () => {},
  progress: () => NOOP_PROGRESS,
  end: async () => {},
  put: async () => {},
  get: async () => undefined,
  pending: async () => [],
  discard() {},
}

export interface StoreJournalOptions {
  store: Store
  log: Logger
  /** Told after each write has landed. */
  onChange(): void
  /** Ended jobs' records kept (newest first); older ones are pruned now and then. */
  jobHistory: number
  /** …and at most this many bytes of them. */
  jobHistoryBytes?: number
}

/** Ended jobs between two prunes of old job records. */
const PRUNE_EVERY = 100
/** Progress of a job still running this long after a change is written; a quicker job writes none. */
const PROGRESS_DELAY_MS = 1000

export function createStoreJournal(o: StoreJournalOptions): Journal {
  // Old records go with the first ended job and then once per PRUNE_EVERY, in one transaction each.
  let endsBeforePrune = 1
  const stored = (spec: JobSpec, q: QuorumState): StoredJob => ({ ...spec, quorum: toStored(q) })
  const save = async (...a: Parameters<Store['saveJobState']>) => {
    await o.store.saveJobState(...a)
    o.onChange()
    if (a[1] === null && --endsBeforePrune === 0) {
      endsBeforePrune = PRUNE_EVERY
      o.store
        .pruneJobs(o.jobHistory, o.jobHistoryBytes)
        .catch((err: Error) => o.log.error('pruning job records: %s', err.message))
    }
  }
  return {
    durable: true,
    begin: (id, spec, q, inputs, deferMs) =>
      save(
        jobRecord(id, spec, q),
        { id, createdAt: spec.createdAt, state: stored(spec, q) },
        { id, inputs: ownedTensors(inputs) },
        { deferMs },
      ),
    progress: (id, spec, q) =>
      progressWriter(
        async () => {
          if (q.state) return
          const pending = { id, createdAt: spec.createdAt, state: stored(spec, q) }
          await save(jobRecord(id, spec, q), pending, undefined, { relaxed: true })
        },
        (err) => o.log.error('job %s: progress not saved: %s', id, err.message),
      ),
    end: (rec, holdMs) => save(rec, null, undefined, { deferMs: holdMs }),
    async put(rec) {
      await o.store.putJob(rec)
      o.onChange()
    },
    get: (id) => o.store.getJob(id),
    async pending(ids) {
      const all = await o.store.listPending()
      return all
        .filter((p) => !ids || ids.includes(p.id))
        .map((p) => {
          const { quorum, ...spec } = p.state as StoredJob
          const inputs = async () => {
            const encoded = (await o.store.getJobInputs(p.id))?.inputs
            return encoded
              ? decodeTensors(encoded as EncodedTensors, { maxElements: Number.POSITIVE_INFINITY }) // our own
              : undefined
          }
          return { id: p.id, spec, q: fromStored(quorum), inputs }
        })
    },
    discard: (id) => o.store.discardJobState(id),
  }
}

/** Encoded inputs to store: views of a caller's larger buffers are copied (`own`). */
function ownedTensors(inputs: NamedTensors): EncodedTensors {
  const out = encodeTensors(inputs)
  for (const t of Object.values(out)) t.data = own(t.data)
  return out
}

/**
 * Runs `write` behind the caller: one write at a time, always of the latest state (marks made while
 * one is waiting collapse into it), a little later, so that a job ending meanwhile skips it. A reload
 * in between loses only progress, never the job: its inputs and pending entry are written at submit.
 */
function progressWriter(write: () => Promise<void>, onError: (err: Error) => void): ProgressWriter {
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
    async close() {
      closed = true
      clearTimeout(timer)
      await chain
    },
  }
}
