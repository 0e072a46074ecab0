/**
 * The local model cache: verified bytes by CID in IndexedDB, a quota with LRU eviction that never
 * evicts a model in use, and a maximum model size. Both limits persist in the settings store.
 */
import { modelCid } from '../shared/cid.ts'
import { ModelIntegrityError, ModelTooLargeError } from '../shared/errors.ts'
import type { Store } from '../store/db.ts'
import type { ModelMeta } from '../store/models.ts'

export interface GetOptions {
  signal?: AbortSignal
  /** PeerIds likely to hold the model (e.g. a job's requester), asked before advertising peers. */
  peers?: string[]
}

export interface ModelSource {
  /** Bytes whose sha2-256 matches `cid`, or UnknownModelError. */
  get(cid: string, opts?: AbortSignal | GetOptions): Promise<Uint8Array>
  has(cid: string): Promise<boolean>
  cached(): Promise<string[]>
}

export async function verifyModelBytes(cid: string, bytes: Uint8Array): Promise<void> {
  const actual = (await modelCid(bytes)).toString()
  if (actual !== cid) throw new ModelIntegrityError(`model bytes hash to ${actual}, expected ${cid}`)
}

export const DEFAULT_QUOTA_BYTES = 2 * 1024 ** 3
export const DEFAULT_MAX_MODEL_BYTES = 512 * 1024 ** 2
const QUOTA_KEY = 'model-hub/quota'
const MAX_KEY = 'model-hub/max-model'

export type CacheStore = Pick<
  Store,
  | 'getModel'
  | 'listModelMeta'
  | 'putModelAndMeta'
  | 'touchModelMeta'
  | 'removeModel'
  | 'getSetting'
  | 'putSetting'
>

/**
 * The oldest-used models to drop so that `incoming` fits in `quota`, skipping models in use. May
 * leave the cache over quota when models in use fill it; the next put tries again.
 */
export function evictionsFor(
  metas: ModelMeta[],
  incoming: { cid: string; size: number },
  quota: number,
  inUse: (cid: string) => boolean,
): string[] {
  const others = metas.filter((m) => m.cid !== incoming.cid)
  let total = others.reduce((n, m) => n + m.size, incoming.size)
  const out: string[] = []
  for (const m of [...others].sort((a, b) => a.lastUsed - b.lastUsed)) {
    if (total <= quota) break
    if (inUse(m.cid)) continue
    out.push(m.cid)
    total -= m.size
  }
  return out
}

export interface ModelCache {
  list(): Promise<ModelMeta[]>
  /** Verified bytes, or undefined; a record that fails its hash is removed. Marks the model used. */
  read(cid: string): Promise<Uint8Array | undefined>
  /** Stores bytes already verified against `cid`, evicting LRU models first; returns evicted CIDs. */
  put(cid: string, bytes: Uint8Array, name: string): Promise<string[]>
  remove(cid: string): Promise<void>
  /** Marks a model in use (never evicted) until the returned function is called. */
  use(cid: string): () => void
  inUse(cid: string): boolean
  quota(): number
  maxModelBytes(): number
  setQuota(bytes: number): Promise<string[]>
  setMaxModelBytes(bytes: number): Promise<void>
  /** Throws ModelTooLargeError unless a model of `size` bytes may be stored. */
  checkSize(size: number, what: string): void
}

export async function createModelCache(
  store: CacheStore,
  opts: { inUse?: () => Iterable<string>; onEvict?: (cid: string) => void } = {},
): Promise<ModelCache> {
  let quota = (await store.getSetting<number>(QUOTA_KEY)) ?? DEFAULT_QUOTA_BYTES
  let maxBytes = (await store.getSetting<number>(MAX_KEY)) ?? DEFAULT_MAX_MODEL_BYTES
  const using = new Map<string, number>()
  let queue: Promise<unknown> = Promise.resolve()
  /** Puts and evictions run one at a time, so concurrent imports cannot both count the same room. */
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = queue.then(fn)
    queue = p.catch(() => {})
    return p
  }
  const inUse = (cid: string) => using.has(cid) || [...(opts.inUse?.() ?? [])].includes(cid)

  async function evict(incoming: { cid: string; size: number }): Promise<string[]> {
    const victims = evictionsFor(await store.listModelMeta(), incoming, quota, inUse)
    for (const cid of victims) {
      await store.removeModel(cid)
      opts.onEvict?.(cid)
    }
    return victims
  }

  const cache: ModelCache = {
    list: () => store.listModelMeta(),
    async read(cid) {
      const rec = await store.getModel(cid)
      if (rec == null) return undefined
      try {
        await verifyModelBytes(cid, rec.bytes)
      } catch {
        await store.removeModel(cid) // corrupted on disk: drop it and fetch again
        return undefined
      }
      void store.touchModelMeta(cid, Date.now()).catch(() => {})
      return rec.bytes
    },
    async put(cid, bytes, name) {
      cache.checkSize(bytes.byteLength, name)
      return serial(async () => {
        const release = cache.use(cid)
        try {
          const evicted = await evict({ cid, size: bytes.byteLength })
          const now = Date.now()
          await store.putModelAndMeta({
            cid,
            bytes,
            size: bytes.byteLength,
            name,
            addedAt: now,
            lastUsed: now,
          })
          return evicted
        } finally {
          release()
        }
      })
    },
    remove: (cid) => serial(() => store.removeModel(cid)),
    use(cid) {
      using.set(cid, (using.get(cid) ?? 0) + 1)
      let done = false
      return () => {
        if (done) return
        done = true
        const n = (using.get(cid) ?? 1) - 1
        if (n > 0) using.set(cid, n)
        else using.delete(cid)
      }
    },
    inUse,
    quota: () => quota,
    maxModelBytes: () => maxBytes,
    async setQuota(bytes) {
      if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new RangeError('quota must be a positive integer')
      quota = bytes
      await store.putSetting(QUOTA_KEY, bytes)
      return serial(() => evict({ cid: '', size: 0 }))
    },
    async setMaxModelBytes(bytes) {
      if (!Number.isSafeInteger(bytes) || bytes <= 0)
        throw new RangeError('maximum must be a positive integer')
      maxBytes = bytes
      await store.putSetting(MAX_KEY, bytes)
    },
    checkSize(size, what) {
      if (size > maxBytes)
        throw new ModelTooLargeError(`${what} is ${size} bytes, over the ${maxBytes}-byte model size limit`)
      if (size > quota)
        throw new ModelTooLargeError(`${what} is ${size} bytes, over the ${quota}-byte storage quota`)
    },
  }
  return cache
}
