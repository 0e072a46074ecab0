/**
 * The single typed IndexedDB module (this folder): schema in schema.ts, accessors here and in
 * sibling files. Nothing outside src/store touches IndexedDB.
 */
import { openDB } from 'idb'
import type { Service } from '../shared/lifecycle.ts'
import { type CreditStore, creditsAccess } from './credits.ts'
import { type ModelStore, modelAccess } from './models.ts'
import { type PendingStore, pendingAccess } from './pending.ts'
import { type ReputationStore, reputationAccess } from './reputation.ts'
import {
  DB_VERSION,
  type Db,
  type JobRecord,
  type ModelRecord,
  ownJobBytes,
  type Schema,
  upgrade,
} from './schema.ts'

export type * from './schema.ts'

export interface Store extends ReputationStore, PendingStore, ModelStore, CreditStore, Service {
  getIdentity(slot: string): Promise<Uint8Array | undefined>
  putIdentity(slot: string, privateKey: Uint8Array): Promise<void>
  getModel(cid: string): Promise<ModelRecord | undefined>
  putModel(rec: ModelRecord): Promise<void>
  listModelCids(): Promise<string[]>
  deleteModel(cid: string): Promise<void>
  putJob(rec: JobRecord): Promise<void>
  getJob(id: string): Promise<JobRecord | undefined>
  listJobs(limit?: number): Promise<JobRecord[]>
  /**
   * Keeps the newest `keep` job records (by submit time, then id, as listJobs) while the ended
   * ones' bytes (`JobRecord.bytes`) sum to at most `maxBytes`, the newest ended one whatever its
   * size (unless `keep` is 0); deletes the older ended ones, outputs included. A job still pending
   * (resumable) is never deleted. Resolves with how many were deleted.
   */
  pruneJobs(keep: number, maxBytes?: number): Promise<number>
  getSetting<T>(key: string): Promise<T | undefined>
  putSetting(key: string, value: unknown): Promise<void>
  /** Closes the database: writes already started still land, held-back job states do not (flush first). */
  stop(): void
}

export async function openStore(name = 'peer-compute'): Promise<Store> {
  const db: Db = await openDB<Schema>(name, DB_VERSION, {
    upgrade: (db, oldVersion, _, tx) => upgrade(db, oldVersion, tx),
    // A newer page wants to upgrade the schema: let go, or this tab would block it forever.
    blocking: () => db.close(),
  })
  return {
    ...reputationAccess(db),
    ...pendingAccess(db),
    ...modelAccess(db),
    ...creditsAccess(db),
    async getIdentity(slot) {
      return (await db.get('identity', slot))?.privateKey
    },
    async putIdentity(slot, privateKey) {
      await db.put('identity', { privateKey, createdAt: Date.now() }, slot)
    },
    getModel: (cid) => db.get('models', cid),
    async putModel(rec) {
      await db.put('models', rec)
    },
    listModelCids: () => db.getAllKeys('models'),
    deleteModel: (cid) => db.delete('models', cid),
    async putJob(rec) {
      await db.put('jobs', ownJobBytes(rec))
    },
    getJob: (id) => db.get('jobs', id),
    async listJobs(limit = 200) {
      const out: JobRecord[] = []
      let cursor = await db.transaction('jobs').store.index('history').openCursor(null, 'prev')
      while (cursor && out.length < limit) {
        out.push(cursor.value)
        cursor = await cursor.continue()
      }
      return out
    },
    async pruneJobs(keep, maxBytes = Number.POSITIVE_INFINITY) {
      const tx = db.transaction(['jobs', 'pending'], 'readwrite')
      const jobs = tx.objectStore('jobs')
      const running = new Set(await tx.objectStore('pending').getAllKeys())
      let [kept, ended, bytes, deleted] = [0, 0, 0, 0]
      let full = false
      // Keys only ([submittedAt, id, bytes]): no outputs are read.
      for (let c = await jobs.index('history').openKeyCursor(null, 'prev'); c; c = await c.continue()) {
        kept++ // a running job counts toward `keep`, as shown in the list, but not toward the budget
        if (running.has(c.primaryKey)) continue
        const size = c.key[2]
        full ||= kept > keep || (ended > 0 && bytes + size > maxBytes)
        if (!full) {
          ended++
          bytes += size
          continue
        }
        await jobs.delete(c.primaryKey)
        deleted++
      }
      await tx.done
      return deleted
    },
    getSetting: async <T>(key: string) => (await db.get('settings', key)) as T | undefined,
    async putSetting(key, value) {
      await db.put('settings', value, key)
    },
    stop: () => db.close(),
  }
}
