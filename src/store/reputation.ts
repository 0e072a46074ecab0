/** Accessors for the `reputation` store: per-peer validation counts as this requester saw them. */
import type { Db, ReputationRecord } from './schema.ts'

export interface ReputationStore {
  allReputation(): Promise<ReputationRecord[]>
  putReputation(rec: ReputationRecord): Promise<void>
  clearReputation(): Promise<void>
}

export function reputationAccess(db: Db): ReputationStore {
  return {
    allReputation: () => db.getAll('reputation'),
    async putReputation(rec) {
      await db.put('reputation', rec)
    },
    clearReputation: () => db.clear('reputation'),
  }
}
