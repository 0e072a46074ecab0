/** Accessors for the `pending` and `jobInputs` stores: a requester's unfinished jobs, so a reload resumes them. */
import type { Db, JobInputsRecord, JobRecord, PendingRecord } from './schema.ts'

export interface PendingStore {
  /**
   * Writes a job's visible record and its resumable state in one transaction, so a page that dies
   * midway never leaves one without the other. `inputs` is written once, with the job's first state;
   * `pending: null` ends the job (deletes its state and inputs). `relaxed` skips the disk flush.
   */
  saveJobState(
    job: JobRecord,
    pending: PendingRecord | null,
    inputs?: JobInputsRecord,
    opts?: { relaxed?: boolean },
  ): Promise<void>
  listPending(): Promise<PendingRecord[]>
  getJobInputs(id: string): Promise<JobInputsRecord | undefined>
}

export function pendingAccess(db: Db): PendingStore {
  return {
    async saveJobState(job, pending, inputs, opts = {}) {
      // 'relaxed' (progress only): no flush to disk; the browser still commits transactions in order.
      const durability = opts.relaxed ? 'relaxed' : 'default'
      const tx = db.transaction(['jobs', 'pending', 'jobInputs'], 'readwrite', { durability })
      const ops: Promise<unknown>[] = [tx.objectStore('jobs').put(job), tx.done]
      if (pending) ops.push(tx.objectStore('pending').put(pending))
      else ops.push(tx.objectStore('pending').delete(job.id), tx.objectStore('jobInputs').delete(job.id))
      if (inputs) ops.push(tx.objectStore('jobInputs').put(inputs))
      await Promise.all(ops)
    },
    listPending: () => db.getAllFromIndex('pending', 'createdAt'),
    getJobInputs: (id) => db.get('jobInputs', id),
  }
}
