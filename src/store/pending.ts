/** Accessors for the `pending` and `jobInputs` stores: a requester's unfinished jobs, so a reload resumes them. */
import { type Db, type JobInputsRecord, type JobRecord, ownJobBytes, type PendingRecord } from './schema.ts'

export interface SaveOptions {
  /** Progress only: no flush to disk (the browser still commits transactions in order). */
  relaxed?: boolean
  /**
   * Hold the write back this long, so that a later write of the same job (its end) replaces it:
   * a job that ends sooner never writes its pending state or its inputs at all. An end held back
   * (to share a commit with other ends) goes with the first commit that starts meanwhile.
   */
  deferMs?: number
}

export interface PendingStore {
  /**
   * Writes a job's visible record and its resumable state together, so a page that dies midway
   * never leaves one without the other. `inputs` is written once, with the job's first state;
   * `pending: null` ends the job (deletes its state and inputs). Writes are group-committed:
   * those made while a transaction is in flight share the next one, and writes of one job that
   * are still queued collapse into its latest state. Resolves once that state is committed.
   */
  saveJobState(
    job: JobRecord,
    pending: PendingRecord | null,
    inputs?: JobInputsRecord,
    opts?: SaveOptions,
  ): Promise<void>
  /** Starts every held-back write now (the page is going away). */
  flushJobStates(): Promise<void>
  /** Deletes the leftover state of a job whose final record is already stored (with the next clean-up). */
  discardJobState(id: string): void
  listPending(): Promise<PendingRecord[]>
  getJobInputs(id: string): Promise<JobInputsRecord | undefined>
}

/** One job's queued state: what the next commit writes for it. */
interface Entry {
  job: JobRecord
  pending: PendingRecord | null
  inputs?: JobInputsRecord
  /** Nothing of this job was ever written: an end writes the record alone, deleting nothing. */
  fresh: boolean
  relaxed: boolean
  /** Its own commit failed: its earlier state (if any) stays for a reload. */
  failed?: boolean
  dueAt: number
  waiters: { resolve(): void; reject(err: unknown): void }[]
}

/**
 * An ended job's pending state and inputs are deleted at most this long after its end is on record,
 * with the oldest waiting job's and every other's that ended since: each transaction that deletes
 * costs Chromium a LevelDB clean-up and compaction pass. A reload in between finds the state, and
 * the final record beside it.
 */
const CLEANUP_DELAY_MS = 2000

/** One job's queued state as a commit writes it. */
export interface JobStateWrite {
  job: JobRecord
  pending: PendingRecord | null
  inputs?: JobInputsRecord
  relaxed: boolean
}

/**
 * Writes entries (the record, its pending state unless ended, its inputs if given) and deletes the
 * pending state and inputs of `deletes`, all or nothing; rejects at once, writing nothing, for a value
 * it cannot store. `relaxed`: no entry needs to be durable before it resolves.
 */
export type JobStateCommit = (entries: JobStateWrite[], deletes: string[], relaxed: boolean) => Promise<void>

export function pendingAccess(db: Db): PendingStore {
  return {
    ...jobStateQueue(idbCommit(db)),
    listPending: () => db.getAllFromIndex('pending', 'createdAt'),
    getJobInputs: (id) => db.get('jobInputs', id),
  }
}

function idbCommit(db: Db): JobStateCommit {
  return async (entries, deletes, relaxed) => {
    const tx = db.transaction(['jobs', 'pending', 'jobInputs'], 'readwrite', {
      durability: relaxed ? 'relaxed' : 'default',
    })
    const ops: Promise<unknown>[] = [tx.done]
    try {
      for (const id of deletes)
        ops.push(tx.objectStore('pending').delete(id), tx.objectStore('jobInputs').delete(id))
      for (const e of entries) {
        ops.push(tx.objectStore('jobs').put(ownJobBytes(e.job)))
        if (e.pending) ops.push(tx.objectStore('pending').put(e.pending))
        if (e.inputs && e.pending) ops.push(tx.objectStore('jobInputs').put(e.inputs))
      }
    } catch (err) {
      // A value that cannot be cloned throws at once: none of this batch may land.
      tx.abort()
      await Promise.allSettled(ops)
      throw err
    }
    await Promise.all(ops)
  }
}

/** The group-commit queue's state (see jobStateQueue). */
interface QueueState {
  write: JobStateCommit
  queue: Map<string, Entry>
  cleanup: Map<string, number> // id → when its deletes are due
  writing: Set<string>
  busy: boolean
  timer: ReturnType<typeof setTimeout> | undefined
  // flushJobStates() calls so far, and how many a finished forced flush has covered: a forced
  // flush takes everything queued when it starts, deletes ended jobs' state at once, and is finite.
  asked: number
  served: number
  idle: { gen: number; resolve(): void }[]
}

/**
 * The group-commit queue behind saveJobState, over any storage's commit (IndexedDB here, files in
 * the Node peer's store): deferral, collapsing and clean-up timing are the same everywhere.
 */
export function jobStateQueue(
  write: JobStateCommit,
): Pick<PendingStore, 'saveJobState' | 'flushJobStates' | 'discardJobState'> {
  const s: QueueState = {
    write,
    queue: new Map(),
    cleanup: new Map(),
    writing: new Set(),
    busy: false,
    timer: undefined,
    asked: 0,
    served: 0,
    idle: [],
  }
  return {
    saveJobState(job, pending, inputs, opts = {}) {
      return new Promise<void>((resolve, reject) => {
        const dueAt = performance.now() + (opts.deferMs ?? 0)
        const relaxed = opts.relaxed ?? false
        const e = s.queue.get(job.id)
        if (pending) s.cleanup.delete(job.id) // running again: its state must stay
        if (e) {
          e.job = job
          e.pending = pending
          if (inputs) e.inputs = inputs
          e.relaxed &&= relaxed
          e.dueAt = Math.min(e.dueAt, dueAt)
          e.waiters.push({ resolve, reject })
        } else {
          // Only a job's first write carries its inputs; a write in flight means it is not fresh.
          const fresh = inputs != null && !s.writing.has(job.id)
          s.queue.set(job.id, { job, pending, inputs, fresh, relaxed, dueAt, waiters: [{ resolve, reject }] })
        }
        schedule(s)
      })
    },
    discardJobState(id) {
      if (s.queue.get(id)?.pending) return // written again since: its state stays
      s.cleanup.set(id, performance.now())
      schedule(s)
    },
    flushJobStates() {
      if (s.queue.size === 0 && s.cleanup.size === 0 && !s.busy) return Promise.resolve()
      const gen = ++s.asked
      const done = new Promise<void>((resolve) => s.idle.push({ gen, resolve }))
      schedule(s)
      return done
    },
  }
}

function schedule(s: QueueState): void {
  if (s.busy || (s.queue.size === 0 && s.cleanup.size === 0 && s.asked === s.served)) return
  clearTimeout(s.timer)
  const due = Math.min(...[...s.queue.values()].map((e) => e.dueAt), ...s.cleanup.values())
  const wait = s.asked > s.served ? 0 : due - performance.now()
  // A microtask gathers the writes of one task (a burst of submits) into one transaction.
  if (wait <= 0) queueMicrotask(() => flush(s))
  else s.timer = setTimeout(() => flush(s), wait)
}

/** Ended jobs whose state was ever written: their pending state and inputs must go. */
const ended = (e: Entry) => !e.pending && !e.fresh

async function flush(s: QueueState): Promise<void> {
  if (s.busy) return
  const { queue, cleanup } = s
  const gen = s.asked
  const force = gen > s.served
  const t = performance.now()
  // Ends held back only to share a commit go with any commit; held-back starts wait their turn.
  const batch = [...queue].filter(([, e]) => force || e.dueAt <= t + 1 || e.pending === null)
  // Once the oldest clean-up is due, every ended job's goes with it (each end is on record already):
  // one deleting commit per CLEANUP_DELAY_MS however many jobs end, not one per job.
  const cleanupDue = force || [...cleanup.values()].some((due) => due <= t + 1)
  const deletes = cleanupDue ? [...cleanup.keys()] : []
  // Forced: ended jobs' state goes in this very commit rather than 2 s later.
  if (force) for (const [id, e] of batch) if (ended(e)) deletes.push(id)
  if (batch.length === 0 && deletes.length === 0) {
    if (force) release(s, gen)
    return schedule(s)
  }
  s.busy = true
  for (const [id] of batch) {
    queue.delete(id)
    s.writing.add(id)
  }
  for (const id of deletes) cleanup.delete(id)
  try {
    await commit(
      s,
      batch.map(([, e]) => e),
      deletes,
    ).catch(async (err) => {
      // One bad record must not fail the others' jobs: alone, each stands or falls by itself.
      if (batch.length + deletes.length === 1) throw err
      const own = new Set(force ? batch.filter(([, e]) => ended(e)).map(([id]) => id) : [])
      const others = deletes.filter((id) => !own.has(id))
      if (others.length) await commit(s, [], others).catch(() => {}) // else a reload cleans up
      await Promise.all(
        batch.map(([id, e]) =>
          commit(s, [e], own.has(id) ? [id] : []).catch((err) => {
            e.failed = true
            settle([e], err)
          }),
        ),
      )
    })
    if (!force) {
      for (const [id, e] of batch) {
        // A later write of state for this id (queued meanwhile) keeps its state.
        if (ended(e) && !e.failed && !queue.get(id)?.pending) cleanup.set(id, t + CLEANUP_DELAY_MS)
      }
    }
    settle(batch.map(([, e]) => e))
  } catch (err) {
    settle(
      batch.map(([, e]) => e),
      err,
    )
  } finally {
    for (const [id] of batch) s.writing.delete(id)
    s.busy = false
    if (force) release(s, gen)
    schedule(s)
  }
}

/** Resolves the flushJobStates() calls up to `gen`, which a forced flush has just covered. */
function release(s: QueueState, gen: number): void {
  s.served = gen
  for (const w of s.idle.filter((w) => w.gen <= gen)) w.resolve()
  s.idle.splice(0, s.idle.length, ...s.idle.filter((w) => w.gen > gen))
}

function settle(entries: Entry[], err?: unknown): void {
  for (const e of entries)
    for (const w of e.waiters.splice(0)) err === undefined ? w.resolve() : w.reject(err)
}

const commit = (s: QueueState, entries: Entry[], deletes: string[]) =>
  s.write(
    entries,
    deletes,
    entries.every((e) => e.relaxed),
  )
