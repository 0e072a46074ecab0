/**
 * This browser's credit: appends each served job's receipt to the hash-linked log in IndexedDB
 * (one append at a time across tabs, under a Web Lock) and exports it signed by this tab's key.
 */
import type { PrivateKey } from '@libp2p/interface'
import type { CreditStore } from '../store/credits.ts'
import type { CreditRecord } from '../store/schema.ts'
import { CREDIT_PER_RECEIPT, exportCreditLog, nextCreditEntry } from './credit-log.ts'
import { encodeReceipt, type Receipt } from './receipt.ts'

export interface Credits {
  /** Credits earned by this browser (one per served, signed job). */
  readonly total: number
  list(): Promise<CreditRecord[]>
  /** The signed log as a JSON file, verifiable with `npm run verify -- <file>`. */
  export(): Promise<Uint8Array>
  /** 'change' when the total changes (in this tab or another). */
  events: EventTarget
}

export interface CreditsInternals extends Credits {
  append(receipt: Receipt): Promise<CreditRecord>
  close(): void
}

export async function createCredits(o: {
  store: CreditStore
  storeName: string
  privateKey: PrivateKey
}): Promise<CreditsInternals> {
  const events = new EventTarget()
  const channel = new BroadcastChannel(`${o.storeName}:credits`)
  let total = 0
  const refresh = async () => {
    // seq runs 0, 1, 2…: the last entry gives the count without walking the log (count() does)
    const next = (((await o.store.lastCredit())?.seq ?? -1) + 1) * CREDIT_PER_RECEIPT
    // The log only grows: a read that started before our own append landed must not lower it.
    if (next > total) {
      total = next
      events.dispatchEvent(new Event('change'))
    }
  }
  await refresh()
  channel.onmessage = () => void refresh().catch(() => {})

  // Receipts that arrive while an append runs go together in the next: one lock, one transaction.
  let queue: { bytes: Uint8Array; resolve(r: CreditRecord): void; reject(err: unknown): void }[] = []
  let draining = false
  let last: CreditRecord | undefined // the newest entry we wrote; another tab's append makes it stale

  async function appendOnce(batch: Uint8Array[], fresh: boolean): Promise<CreditRecord[]> {
    let prev = fresh ? await o.store.lastCredit() : last
    const recs: CreditRecord[] = []
    for (const bytes of batch) {
      prev = await nextCreditEntry(prev, bytes)
      recs.push(prev)
    }
    await o.store.addCredits(recs)
    last = prev
    return recs
  }
  /** Appends; a stale link (ConstraintError on seq: another tab appended) re-links to the new last entry. */
  async function append(batch: Uint8Array[]): Promise<CreditRecord[]> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await appendOnce(batch, attempt > 0 || last == null)
      } catch (err) {
        if ((err as Error).name !== 'ConstraintError' || attempt >= 5) throw err
      }
    }
  }
  async function drain(): Promise<void> {
    while (queue.length) {
      const batch = queue
      queue = []
      try {
        const recs = await navigator.locks.request(`${o.storeName}:credits`, () =>
          append(batch.map((b) => b.bytes)),
        )
        const next = (recs.at(-1)!.seq + 1) * CREDIT_PER_RECEIPT
        if (next > total) {
          total = next
          events.dispatchEvent(new Event('change'))
        }
        for (const [i, b] of batch.entries()) b.resolve(recs[i]!)
        try {
          channel.postMessage('change')
        } catch {} // closed at stop: the entries are on record all the same
      } catch (err) {
        for (const b of batch) b.reject(err)
      }
    }
    draining = false
  }

  return {
    get total() {
      return total
    },
    list: () => o.store.listCredits(),
    export: async () => exportCreditLog(await o.store.listCredits(), o.privateKey),
    events,
    async append(receipt) {
      const bytes = encodeReceipt(receipt)
      const rec = new Promise<CreditRecord>((resolve, reject) => queue.push({ bytes, resolve, reject }))
      if (!draining) {
        draining = true
        void drain()
      }
      return rec
    },
    close: () => channel.close(),
  }
}
