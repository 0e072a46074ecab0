/** Test page: the IndexedDB store and its write-behind users, plus a count of readwrite transactions. */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { type JobRecord, type JobStatus, openStore, type Store } from '../../src/store/db.ts'
import { verifyCreditLog } from '../../src/trust/credit-log.ts'
import { createCredits } from '../../src/trust/credits.ts'
import { type Receipt, signReceipt } from '../../src/trust/receipt.ts'
import { createReputation } from '../../src/trust/reputation.ts'

/** A job's visible record, as the requester writes it. */
const jobRecord = (id: string, status: JobStatus, submittedAt = 1): JobRecord => ({
  id,
  model: 'm',
  modelName: 'm',
  status,
  submittedAt,
  verified: status === 'verified',
})

/** A job's first write, as at submit: its running record, a resumable state and its inputs. */
const startJob = (store: Store, id: string, opts?: Parameters<Store['saveJobState']>[3]) =>
  store.saveJobState(jobRecord(id, 'running'), { id, createdAt: 1, state: 1 }, { id, inputs: 1 }, opts)

/** A validly signed receipt for a made-up job `i` (what a contributor appends per served job). */
async function receiptFor(i: number, key: PrivateKey): Promise<Receipt> {
  const cid = async (s: string) => CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode(s)))
  const worker = peerIdFromPrivateKey(key).toString()
  return signReceipt(
    {
      v: 1,
      job: await cid(`job ${i}`),
      model: await cid('model'),
      input: await cid(`input ${i}`),
      output: await cid(`output ${i}`),
      worker,
      requester: worker,
      ep: 'wasm',
      adapter: 'none',
      timing: { queueUs: 0, runUs: 1000 },
      ts: Date.now(),
    },
    key,
  )
}

window.__writes = {}
const transaction = IDBDatabase.prototype.transaction
IDBDatabase.prototype.transaction = function (this: IDBDatabase, names, mode, opts) {
  if (mode === 'readwrite') {
    const key = [names].flat().sort().join('+')
    window.__writes[key] = (window.__writes[key] ?? 0) + 1
  }
  return transaction.call(this, names, mode, opts)
} as typeof transaction
const api = {
  openStore,
  createReputation,
  createCredits,
  verifyCreditLog,
  generateKeyPair,
  receiptFor,
  jobRecord,
  startJob,
}
/** What `window.__store` holds (declared in ./globals.d.ts for the e2e drivers). */
export type StoreApi = typeof api
window.__store = api
document.body.dataset.ready = 'true'
