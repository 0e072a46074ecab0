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
    const next = (await o.store.countCredits()) * CREDIT_PER_RECEIPT
    if (next !== total) {
      total = next
      events.dispatchEvent(new Event('change'))
    }
  }
  await refresh()
  channel.onmessage = () => void refresh().catch(() => {})

  async function appendOnce(bytes: Uint8Array): Promise<CreditRecord> {
    const rec = await nextCreditEntry(await o.store.lastCredit(), bytes)
    await o.store.addCredit(rec)
    return rec
  }
  /** Appends; a tab that lost a race (ConstraintError on seq) re-links to the new last entry. */
  async function append(bytes: Uint8Array): Promise<CreditRecord> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await appendOnce(bytes)
      } catch (err) {
        if ((err as Error).name !== 'ConstraintError' || attempt >= 5) throw err
      }
    }
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
      const rec = await navigator.locks.request(`${o.storeName}:credits`, () => append(bytes))
      await refresh()
      channel.postMessage('change')
      return rec
    },
    close: () => channel.close(),
  }
}
