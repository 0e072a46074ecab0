/**
 * This browser's credit: appends each served job's receipt to the hash-linked log in IndexedDB
 * (one append at a time across tabs, under a Web Lock) and exports it signed by this tab's key.
 * Each append tells the other tabs the newest seq, so they need not read the log to follow it.
 */
import type { PrivateKey } from '@libp2p/interface'
import { TypedEventEmitter, type TypedEventTarget } from 'main-event'
import type { Service } from '../shared/lifecycle.ts'
import type { CreditStore } from '../store/credits.ts'
import type { CreditRecord } from '../store/schema.ts'
import { CREDIT_PER_RECEIPT, exportCreditLog, nextCreditEntry } from './credit-log.ts'
import { encodeReceipt, type Receipt } from './receipt.ts'

/** The events of `peer.credits.events`. */
export interface CreditsEvents {
  /** The total changed (in this tab or another). */
  change: Event
}

export interface Credits {
  /** Credits earned by this browser (one per served, signed job). */
  readonly total: number
  list(): Promise<CreditRecord[]>
  /** Entries appended at or after `since` (ms), oldest first. */
  recent(since: number): Promise<CreditRecord[]>
  /** The signed log as a JSON file, verifiable with `npm run verify -- <file>`. */
  export(): Promise<Uint8Array>
  events: TypedEventTarget<CreditsEvents>
}

export interface CreditsInternals extends Credits, Service {
  /** Resolves once the receipt is on record. */
  append(receipt: Receipt): Promise<CreditRecord>
  /** Resolves once every receipt appended so far is on record. */
  flush(): Promise<void>
  /** Closes the channel to the other tabs (after flush(): an append tells them). */
  stop(): void
}

/** The part of the Web Locks API that appends use; a Node peer passes an in-process one. */
export interface Locks {
  request<T>(name: string, fn: () => Promise<T>): Promise<T>
}

interface CreditsOptions {
  store: CreditStore
  storeName: string
  privateKey: PrivateKey
  locks?: Locks
}

export async function createCredits(o: CreditsOptions): Promise<CreditsInternals> {
  const locks: Locks = o.locks ?? navigator.locks
  const channel = new BroadcastChannel(`${o.storeName}:credits`)
  const total = await createCreditTotal(o.store, channel)
  const appender = createAppender(o, locks, channel, total.raise)
  return {
    get total() {
      return total.value
    },
    list: () => o.store.listCredits(),
    recent: (since) => o.store.recentCredits(since),
    export: async () => exportCreditLog(await o.store.listCredits(), o.privateKey),
    events: total.events,
    append: appender.append,
    flush: appender.flush,
    stop: () => channel.close(),
  }
}

/** The credit total, followed across tabs: it only rises, from our appends and other tabs' messages. */
async function createCreditTotal(store: CreditStore, channel: BroadcastChannel) {
  const events = new TypedEventEmitter<CreditsEvents>()
  let total = 0
  // seq runs 0, 1, 2…: the last entry gives the count without walking the log (count() does).
  // The log only grows: a read that started before our own append landed must not lower it.
  const refresh = async () => raise((((await store.lastCredit())?.seq ?? -1) + 1) * CREDIT_PER_RECEIPT)
  await refresh()
  // Another tab appended: its message names the newest seq (the log only grows), else read it.
  channel.onmessage = (e: MessageEvent) => {
    const seq = (e.data as { seq?: unknown } | null)?.seq
    const next = typeof seq === 'number' ? (seq + 1) * CREDIT_PER_RECEIPT : Number.NaN
    if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(next) || next <= 0)
      return void refresh().catch(() => {})
    raise(next)
  }
  function raise(next: number): void {
    if (next <= total) return
    total = next
    events.dispatchEvent(new Event('change'))
  }
  return {
    get value() {
      return total
    },
    raise,
    events,
  }
}

/** Appends receipts to the log, one batch at a time under the lock, and tells the other tabs. */
function createAppender(
  o: CreditsOptions,
  locks: Locks,
  channel: BroadcastChannel,
  raise: (total: number) => void,
) {
  // Receipts are written at once, not held back: a reload right after a job must not lose its
  // credit. Those that arrive while an append runs go together in the next: one lock, one transaction.
  let queue: { bytes: Uint8Array; resolve(r: CreditRecord): void; reject(err: unknown): void }[] = []
  let busy = false
  let latest: Promise<unknown> = Promise.resolve() // the last append: batches land in order
  const start = () => {
    if (busy) return
    busy = true
    void drain().finally(() => {
      busy = false
      if (queue.length) start() // queued after the drain's last look
    })
  }
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
        const recs = await locks.request(`${o.storeName}:credits`, () => append(batch.map((b) => b.bytes)))
        const seq = recs.at(-1)!.seq
        raise((seq + 1) * CREDIT_PER_RECEIPT)
        for (const [i, b] of batch.entries()) b.resolve(recs[i]!)
        try {
          channel.postMessage({ seq })
        } catch {} // closed at stop: the entries are on record all the same
      } catch (err) {
        for (const b of batch) b.reject(err)
      }
    }
  }

  return {
    async append(receipt: Receipt): Promise<CreditRecord> {
      const bytes = encodeReceipt(receipt)
      const rec = new Promise<CreditRecord>((resolve, reject) => queue.push({ bytes, resolve, reject }))
      latest = rec.catch(() => {})
      start()
      return rec
    },
    flush: async () => void (await latest),
  }
}
