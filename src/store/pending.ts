/** Accessors for the `pending` and `jobInputs` stores: a requester's unfinished jobs, so a reload resumes them. */
import type { Db, JobInputsRecord, JobRecord, PendingRecord } from './schema.ts'

export interface SaveOptions {
  /** Progress only: no flush to disk (the browser still commits transactions in order). */
  relaxed?: boolean
  /**
   * Hold the write back this long, so that a later write of the same job (its end) replaces it:
   * a job that ends sooner never writes its pending state or its inputs at all.
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
  dueAt: number
  waiters: { resolve(): void; reject(err: unknown): void }[]
}

export function pendingAccess(db: Db): PendingStore {
  const queue = new Map<string, Entry>()
  const writing = new Set<string>()
  let busy = false
  let timer: ReturnType<typeof setTimeout> | undefined
  let now = false // flush even held-back entries

  function schedule(): void {
    if (busy || queue.size === 0) return
    clearTimeout(timer)
    const due = Math.min(...[...queue.values()].map((e) => e.dueAt))
    const wait = now ? 0 : due - performance.now()
    // A microtask gathers the writes of one task (a burst of submits) into one transaction.
    if (wait <= 0) queueMicrotask(flush)
    else timer = setTimeout(flush, wait)
  }

  async function flush(): Promise<void> {
    if (busy) return
    const t = performance.now()
    const batch = [...queue].filter(([, e]) => now || e.dueAt <= t + 1)
    if (batch.length === 0) return schedule()
    busy = true
    for (const [id] of batch) {
      queue.delete(id)
      writing.add(id)
    }
    try {
      await commit(batch.map(([, e]) => e)).catch(async (err) => {
        // One bad record must not fail the others' jobs: alone, each stands or falls by itself.
        if (batch.length === 1) throw err
        await Promise.all(batch.map(([, e]) => commit([e]).catch((err) => settle([e], err))))
      })
      settle(batch.map(([, e]) => e))
    } catch (err) {
      settle(
        batch.map(([, e]) => e),
        err,
      )
    } finally {
      for (const [id] of batch) writing.delete(id)
      busy = false
      if (queue.size === 0) now = false
      schedule()
    }
  }

  function settle(entries: Entry[], err?: unknown): void {
    for (const e of entries)
      for (const w of e.waiters.splice(0)) err === undefined ? w.resolve() : w.reject(err)
  }

  async function commit(entries: Entry[]): Promise<void> {
    const durability = entries.every((e) => e.relaxed) ? 'relaxed' : 'default'
    const tx = db.transaction(['jobs', 'pending', 'jobInputs'], 'readwrite', { durability })
    const ops: Promise<unknown>[] = [tx.done]
    try {
      for (const e of entries) {
        ops.push(tx.objectStore('jobs').put(e.job))
        if (e.pending) ops.push(tx.objectStore('pending').put(e.pending))
        else if (!e.fresh)
          ops.push(tx.objectStore('pending').delete(e.job.id), tx.objectStore('jobInputs').delete(e.job.id))
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

  return {
    saveJobState(job, pending, inputs, opts = {}) {
      return new Promise<void>((resolve, reject) => {
        const dueAt = performance.now() + (opts.deferMs ?? 0)
        const relaxed = opts.relaxed ?? false
        const e = queue.get(job.id)
        if (e) {
          e.job = job
          e.pending = pending
          if (inputs) e.inputs = inputs
          e.relaxed &&= relaxed
          e.dueAt = Math.min(e.dueAt, dueAt)
          e.waiters.push({ resolve, reject })
        } else {
          // Only a job's first write carries its inputs; a write in flight means it is not fresh.
          const fresh = inputs != null && !writing.has(job.id)
          queue.set(job.id, { job, pending, inputs, fresh, relaxed, dueAt, waiters: [{ resolve, reject }] })
        }
        schedule()
      })
    },
    flushJobStates() {
      now = queue.size > 0
      const all = [...queue.values()].map(
        (e) => new Promise<void>((r) => e.waiters.push({ resolve: r, reject: r })),
      )
      schedule()
      return Promise.all(all).then(() => {})
    },
    listPending: () => db.getAllFromIndex('pending', 'createdAt'),
    getJobInputs: (id) => db.get('jobInputs', id),
  }
}
