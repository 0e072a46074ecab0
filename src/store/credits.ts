/** Accessors for the `credits` store: this browser's append-only, hash-linked log of served receipts. */
import { own } from '../shared/bytes.ts'
import type { CreditRecord, Db } from './schema.ts'

export interface CreditStore {
  /** The newest entry, the one the next entry links to. */
  lastCredit(): Promise<CreditRecord | undefined>
  /** Appends, in one transaction; rejects with a ConstraintError if a `seq` is taken (another tab appended first). */
  addCredits(recs: CreditRecord[]): Promise<void>
  listCredits(): Promise<CreditRecord[]>
  /**
   * Entries appended at or after `since` (ms), oldest first, read from the newest back: a dispute's
   * admission check must not read a months-long log for each question a stranger asks.
   */
  recentCredits(since: number): Promise<CreditRecord[]>
}

export function creditsAccess(db: Db): CreditStore {
  return {
    async lastCredit() {
      const cursor = await db.transaction('credits').store.openCursor(null, 'prev')
      return cursor?.value
    },
    async addCredits(recs) {
      const tx = db.transaction('credits', 'readwrite')
      await Promise.all([...recs.map((r) => tx.store.add({ ...r, receipt: own(r.receipt) })), tx.done])
    },
    listCredits: () => db.getAll('credits'),
    async recentCredits(since) {
      const out: CreditRecord[] = []
      let cursor = await db.transaction('credits').store.openCursor(null, 'prev')
      // Appended in time order: the first older entry ends it.
      while (cursor && cursor.value.at >= since) {
        out.push(cursor.value)
        cursor = await cursor.continue()
      }
      return out.reverse()
    },
  }
}
