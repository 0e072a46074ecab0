/** Accessors for the `credits` store: this browser's append-only, hash-linked log of served receipts. */
import { own } from '../shared/bytes.ts'
import type { CreditRecord, Db } from './schema.ts'

export interface CreditStore {
  /** The newest entry, the one the next entry links to. */
  lastCredit(): Promise<CreditRecord | undefined>
  /** Appends, in one transaction; rejects with a ConstraintError if a `seq` is taken (another tab appended first). */
  addCredits(recs: CreditRecord[]): Promise<void>
  listCredits(): Promise<CreditRecord[]>
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
  }
}
