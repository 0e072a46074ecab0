/** The model hub's store in memory, the same shape as the IndexedDB accessors (no chunk records kept). */
import type { HubStore } from '../../src/models/hub.ts'
import type { ModelRecord } from '../../src/store/db.ts'
import type { ModelMeta } from '../../src/store/models.ts'

export function memModelStore(): HubStore & { records: Map<string, ModelRecord> } {
  const records = new Map<string, ModelRecord>()
  const metas = new Map<string, ModelMeta>()
  const settings = new Map<string, unknown>()
  return {
    records,
    getModel: async (cid) => records.get(cid),
    listModelMeta: async () => [...metas.values()],
    async putModelAndMeta(rec) {
      records.set(rec.cid, rec)
      metas.set(rec.cid, {
        cid: rec.cid,
        name: rec.name,
        size: rec.size,
        addedAt: rec.addedAt,
        lastUsed: rec.lastUsed,
      })
    },
    async touchModelMeta(cid, at) {
      const m = metas.get(cid)
      if (m) metas.set(cid, { ...m, lastUsed: at })
    },
    async removeModel(cid) {
      records.delete(cid)
      metas.delete(cid)
    },
    getSetting: async <T>(k: string) => settings.get(k) as T | undefined,
    putSetting: async (k, v) => void settings.set(k, v),
    getModelChunks: async () => [],
    putModelChunks: async () => {},
    clearModelChunks: async () => {},
  }
}
