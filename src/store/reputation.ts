/** Accessors for the `reputation` store: per-peer validation counts as this requester saw them. */
import type { Db, ReputationRecord } from './schema.ts'

export interface ReputationStore {
  allReputation(): Promise<ReputationRecord[]>
  /** One transaction for all. */
  putReputations(recs: ReputationRecord[]): Promise<void>
  clearReputation(): Promise<void>
}

export function reputationAccess(db: Db): ReputationStore {
  return {
    allReputation: () => db.getAll('reputation'),
    async putReputations(recs) {
      const tx = db.transaction('reputation', 'readwrite')
      await Promise.all([...recs.map((r) => tx.store.put(r)), tx.done])
    },
    clearReputation: () => db.clear('reputation'),
  }
}
