/** Accessors for the `pending` store: a requester's unfinished jobs, so a reload resumes them. */
import type { Db, PendingRecord } from './schema.ts'

export interface PendingStore {
  putPending(rec: PendingRecord): Promise<void>
  deletePending(id: string): Promise<void>
  listPending(): Promise<PendingRecord[]>
}

export function pendingAccess(db: Db): PendingStore {
  return {
    async putPending(rec) {
      await db.put('pending', rec)
    },
    deletePending: (id) => db.delete('pending', id),
    listPending: () => db.getAllFromIndex('pending', 'createdAt'),
  }
}
