/**
 * Accessors for cached models: bytes in `models`; a small listing record with the LRU clock in `settings`
 * under `model/<cid>` (listing or touching must not read or rewrite megabytes); partial transfers in `modelChunks`.
 */
import type { Db, ModelChunkRecord, ModelRecord } from './schema.ts'

/** What the hub lists and evicts by: a model record without its bytes. */
export interface ModelMeta {
  cid: string
  name: string
  size: number
  addedAt: number
  lastUsed: number
}

export interface ModelStore {
  /** Every cached model's metadata; repairs records written without one. */
  listModelMeta(): Promise<ModelMeta[]>
  putModelAndMeta(rec: ModelRecord): Promise<void>
  touchModelMeta(cid: string, at: number): Promise<void>
  /** Removes a model, its metadata and any chunks, in one transaction. */
  removeModel(cid: string): Promise<void>
  getModelChunks(cid: string): Promise<ModelChunkRecord[]>
  putModelChunks(recs: ModelChunkRecord[]): Promise<void>
  clearModelChunks(cid: string): Promise<void>
}

const PREFIX = 'model/'
const metaKey = (cid: string) => PREFIX + cid
const metaRange = () => IDBKeyRange.bound(PREFIX, `${PREFIX}\uffff`)
const metaOf = ({ cid, name, size, addedAt, lastUsed }: ModelRecord): ModelMeta => ({
  cid,
  name,
  size,
  addedAt,
  lastUsed,
})
/** Every chunk key of one model: [cid, 0] … [cid, max]. */
const chunkRange = (cid: string) => IDBKeyRange.bound([cid, 0], [cid, Number.MAX_SAFE_INTEGER])
const isMeta = (x: unknown): x is ModelMeta =>
  typeof (x as ModelMeta)?.cid === 'string' && Number.isSafeInteger((x as ModelMeta).size)

export function modelAccess(db: Db): ModelStore {
  return {
    async listModelMeta() {
      const cids = new Set(await db.getAllKeys('models'))
      const metas = ((await db.getAll('settings', metaRange())) as unknown[]).filter(isMeta)
      const out = metas.filter((m) => cids.has(m.cid))
      for (const m of metas) if (!cids.has(m.cid)) await db.delete('settings', metaKey(m.cid))
      for (const cid of cids) {
        if (out.some((m) => m.cid === cid)) continue
        const rec = await db.get('models', cid) // written before metadata existed: read once, then never again
        if (rec == null) continue
        await db.put('settings', metaOf(rec), metaKey(cid))
        out.push(metaOf(rec))
      }
      return out
    },
    async putModelAndMeta(rec) {
      const tx = db.transaction(['models', 'settings'], 'readwrite')
      await Promise.all([
        tx.objectStore('models').put(rec),
        tx.objectStore('settings').put(metaOf(rec), metaKey(rec.cid)),
        tx.done,
      ])
    },
    async touchModelMeta(cid, at) {
      const tx = db.transaction('settings', 'readwrite')
      const meta = await tx.store.get(metaKey(cid))
      if (isMeta(meta)) await tx.store.put({ ...meta, lastUsed: at }, metaKey(cid))
      await tx.done
    },
    async removeModel(cid) {
      const tx = db.transaction(['models', 'settings', 'modelChunks'], 'readwrite')
      await tx.objectStore('models').delete(cid)
      await tx.objectStore('settings').delete(metaKey(cid))
      await tx.objectStore('modelChunks').delete(chunkRange(cid))
      await tx.done
    },
    getModelChunks: (cid) => db.getAllFromIndex('modelChunks', 'cid', cid),
    async putModelChunks(recs) {
      const tx = db.transaction('modelChunks', 'readwrite')
      await Promise.all([...recs.map((r) => tx.store.put(r)), tx.done])
    },
    clearModelChunks: (cid) => db.delete('modelChunks', chunkRange(cid)),
  }
}
