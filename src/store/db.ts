/** The single typed IndexedDB module: identity, models by CID, job history, settings. */
import { type DBSchema, type IDBPDatabase, openDB } from 'idb'

export interface ModelRecord {
  cid: string
  bytes: Uint8Array
  size: number
  name: string
  addedAt: number
  lastUsed: number
}

export type JobStatus = 'pending' | 'running' | 'done' | 'failed'

export interface JobRecord {
  id: string
  model: string
  modelName: string
  status: JobStatus
  submittedAt: number
  finishedAt?: number
  worker?: string
  ep?: string
  roundTripMs?: number
  runMs?: number
  verified: boolean
  error?: { name: string; message: string }
  /** dag-cbor receipt bytes, exportable and verifiable offline. */
  receipt?: Uint8Array
  outputCid?: string
  /** CID of the signed job body, once a contributor accepted it. */
  jobCid?: string
}

interface Schema extends DBSchema {
  identity: { key: string; value: { privateKey: Uint8Array; createdAt: number } }
  models: { key: string; value: ModelRecord; indexes: { lastUsed: number } }
  jobs: { key: string; value: JobRecord; indexes: { submittedAt: number } }
  settings: { key: string; value: unknown }
}

export interface Store {
  getIdentity(slot: string): Promise<Uint8Array | undefined>
  putIdentity(slot: string, privateKey: Uint8Array): Promise<void>
  getModel(cid: string): Promise<ModelRecord | undefined>
  putModel(rec: ModelRecord): Promise<void>
  touchModel(cid: string): Promise<void>
  listModelCids(): Promise<string[]>
  deleteModel(cid: string): Promise<void>
  putJob(rec: JobRecord): Promise<void>
  getJob(id: string): Promise<JobRecord | undefined>
  listJobs(limit?: number): Promise<JobRecord[]>
  getSetting<T>(key: string): Promise<T | undefined>
  putSetting(key: string, value: unknown): Promise<void>
  close(): void
}

export const DB_VERSION = 1

export async function openStore(name = 'peer-compute'): Promise<Store> {
  const db: IDBPDatabase<Schema> = await openDB<Schema>(name, DB_VERSION, {
    upgrade(db, oldVersion) {
      // One step per version; never edit a past step.
      if (oldVersion < 1) {
        db.createObjectStore('identity')
        db.createObjectStore('models', { keyPath: 'cid' }).createIndex('lastUsed', 'lastUsed')
        db.createObjectStore('jobs', { keyPath: 'id' }).createIndex('submittedAt', 'submittedAt')
        db.createObjectStore('settings')
      }
    },
  })
  return {
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
    async touchModel(cid) {
      const tx = db.transaction('models', 'readwrite')
      const rec = await tx.store.get(cid)
      if (rec) await tx.store.put({ ...rec, lastUsed: Date.now() })
      await tx.done
    },
    listModelCids: () => db.getAllKeys('models'),
    deleteModel: (cid) => db.delete('models', cid),
    async putJob(rec) {
      await db.put('jobs', rec)
    },
    getJob: (id) => db.get('jobs', id),
    async listJobs(limit = 200) {
      const out: JobRecord[] = []
      let cursor = await db.transaction('jobs').store.index('submittedAt').openCursor(null, 'prev')
      while (cursor && out.length < limit) {
        out.push(cursor.value)
        cursor = await cursor.continue()
      }
      return out
    },
    getSetting: async <T>(key: string) => (await db.get('settings', key)) as T | undefined,
    async putSetting(key, value) {
      await db.put('settings', value, key)
    },
    close: () => db.close(),
  }
}
