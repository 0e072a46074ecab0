/** Accessors for the `pending` store: a requester's unfinished jobs, so a reload resumes them. */
import type { Db, JobRecord, PendingRecord } from './schema.ts'

export interface PendingStore {
  /**
   * Writes a job's visible record and its resumable state in one transaction, so a page that dies
   * midway never leaves one without the other; `pending: null` ends the job (deletes its state).
   */
  saveJobState(job: JobRecord, pending: PendingRecord | null): Promise<void>
  listPending(): Promise<PendingRecord[]>
}

export function pendingAccess(db: Db): PendingStore {
  return {
    async saveJobState(job, pending) {
      const tx = db.transaction(['jobs', 'pending'], 'readwrite')
      await Promise.all([
        tx.objectStore('jobs').put(job),
        pending ? tx.objectStore('pending').put(pending) : tx.objectStore('pending').delete(job.id),
        tx.done,
      ])
    },
    listPending: () => db.getAllFromIndex('pending', 'createdAt'),
  }
}
