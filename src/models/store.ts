/** Model bytes by CID: IndexedDB first, then the catalog URL. Bytes are hash-checked before use. */

import { modelCid } from '../shared/cid.ts'
import { ModelIntegrityError, UnknownModelError } from '../shared/errors.ts'
import type { Store } from '../store/db.ts'
import type { Catalog } from './catalog.ts'

export interface ModelSource {
  /** Bytes whose sha2-256 matches `cid`, or UnknownModelError. */
  get(cid: string, signal?: AbortSignal): Promise<Uint8Array>
  has(cid: string): Promise<boolean>
  cached(): Promise<string[]>
}

export async function verifyModelBytes(cid: string, bytes: Uint8Array): Promise<void> {
  const actual = (await modelCid(bytes)).toString()
  if (actual !== cid) throw new ModelIntegrityError(`model bytes hash to ${actual}, expected ${cid}`)
}

export function createModelSource(store: Store, catalog: Catalog): ModelSource {
  const inflight = new Map<string, Promise<Uint8Array>>()

  async function fetchAndStore(cid: string, signal?: AbortSignal): Promise<Uint8Array> {
    const entry = catalog.byCid(cid)
    if (entry == null) throw new UnknownModelError(`model ${cid} is neither cached nor in the catalog`)
    const res = await fetch(catalog.url(entry), signal ? { signal } : {})
    if (!res.ok) throw new UnknownModelError(`model ${entry.name}: HTTP ${res.status}`)
    const bytes = new Uint8Array(await res.arrayBuffer())
    await verifyModelBytes(cid, bytes)
    const now = Date.now()
    await store.putModel({
      cid,
      bytes,
      size: bytes.byteLength,
      name: entry.name,
      addedAt: now,
      lastUsed: now,
    })
    return bytes
  }

  return {
    async get(cid, signal) {
      const rec = await store.getModel(cid)
      if (rec) {
        await verifyModelBytes(cid, rec.bytes)
        return rec.bytes
      }
      let p = inflight.get(cid)
      if (p == null) {
        p = fetchAndStore(cid, signal).finally(() => inflight.delete(cid))
        inflight.set(cid, p)
      }
      return p
    },
    has: async (cid) => (await store.getModel(cid)) != null || catalog.byCid(cid) != null,
    cached: () => store.listModelCids(),
  }
}
