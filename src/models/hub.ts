/**
 * The model hub: imports (URL, file, catalog), the local cache, and peer-to-peer distribution. A model
 * a job needs comes from the cache, then its catalog URL, then peers that hold it (the requester first).
 *
 * @example
 * const info = await peer.models.importUrl('https://example.com/model.onnx')   // NotOnnxError, ModelTooLargeError
 * peer.models.events.addEventListener('progress', (e) => console.log(e.detail.loaded, e.detail.total))
 */
import type { Logger } from '@libp2p/interface'
import { TypedEventEmitter } from 'main-event'
import {
  fromPeers,
  getModel,
  type HubState,
  importCatalog,
  importFile,
  importUrl,
  storedChunks,
} from './hub-sources.ts'
import type { ModelHubEvents, ModelHubOptions, ModelHubService, ModelRemoved } from './hub-types.ts'
import { createModelProvider } from './provider.ts'
import { createModelCache, type GetOptions, type ModelCache } from './store.ts'

export type {
  HubStore,
  ImportOptions,
  ModelHub,
  ModelHubEvents,
  ModelHubOptions,
  ModelHubService,
  ModelInfo,
  ModelNetwork,
  ModelProgress,
  ModelRemoved,
  PeerFetchOptions,
  TransferRecord,
} from './hub-types.ts'

const asOptions = (o?: AbortSignal | GetOptions): GetOptions =>
  o == null ? {} : o instanceof AbortSignal ? { signal: o } : o

export async function createModelHub(opts: ModelHubOptions): Promise<ModelHubService> {
  const { store, catalog, log } = opts
  const events = new TypedEventEmitter<ModelHubEvents>()
  const changed = () => events.dispatchEvent(new Event('change'))
  const removedHooks = new Set<(removed: ModelRemoved) => void>()
  const removed = (cid: string, reason: ModelRemoved['reason']) => {
    for (const fn of removedHooks) fn({ cid, reason })
    changed()
  }
  const cache = await createModelCache(store, {
    ...(opts.inUse ? { inUse: opts.inUse } : {}),
    onEvict: (cid) => removed(cid, 'evicted'),
  })
  const s: HubState = {
    opts,
    store,
    catalog,
    log,
    cache,
    inflight: new Map(),
    history: [],
    net: undefined,
    chunks: storedChunks(store),
    changed,
    progress: (p) => events.dispatchEvent(new CustomEvent('progress', { detail: p })),
  }

  const provider = cacheProvider(opts, cache)

  return {
    events,
    provider,
    attach(n) {
      s.net = n
    },
    onRemoved(fn) {
      removedHooks.add(fn)
      return () => void removedHooks.delete(fn)
    },
    get: (cid, o) => getModel(s, cid, asOptions(o)),
    has: async (cid) =>
      (await store.getModel(cid)) != null ||
      catalog.byCid(cid) != null ||
      (s.net?.advertisers(cid).length ?? 0) > 0,
    cached: async () => (await store.listModelMeta()).map((m) => m.cid),
    async list() {
      const metas = await store.listModelMeta()
      return metas.map((m) => ({ ...m, inUse: cache.inUse(m.cid) })).sort((a, b) => b.lastUsed - a.lastUsed)
    },
    importUrl: (url, o = {}) => importUrl(s, url, o),
    importFile: (file, o = {}) => importFile(s, file, o),
    importCatalog: (nameOrCid, o = {}) => importCatalog(s, nameOrCid, o),
    fetchFromPeers: async (cid, o = {}) => (await fromPeers(s, cid, o)).rec,
    async delete(cid) {
      await cache.remove(cid)
      removed(cid, 'deleted')
    },
    transfers: () => [...s.history],
    get quotaBytes() {
      return cache.quota()
    },
    get maxModelBytes() {
      return cache.maxModelBytes()
    },
    async setQuota(bytes) {
      await cache.setQuota(bytes)
      changed()
    },
    setMaxModelBytes: (bytes) => cache.setMaxModelBytes(bytes),
  }
}

/** Serves the cached models to peers; each one is in use (never evicted) while it is held. */
function cacheProvider(opts: ModelHubOptions, cache: ModelCache) {
  return createModelProvider({
    log: opts.log,
    ...(__PC_TEST_HOOKS__ && opts.testHooks ? { testHooks: opts.testHooks } : {}),
    async acquire(cid) {
      const release = cache.use(cid)
      const bytes = await cache.read(cid).catch(() => undefined)
      if (bytes == null) release()
      return bytes && { bytes, release }
    },
  })
}

/** What `unloadRemovedModels` needs of an engine (src/compute/bridge.ts's InferenceEngine has it). */
export interface ModelUnloader {
  evict(cid: string): Promise<unknown>
}

/**
 * Unloads from `engine` each model the hub deletes or evicts, so no worker keeps serving a model the
 * cache dropped: the composition root wires it once, with the engine whose residency all share.
 * Returns the detach.
 */
export function unloadRemovedModels(
  hub: Pick<ModelHubService, 'onRemoved'>,
  engine: ModelUnloader,
  log?: Logger,
): () => void {
  return hub.onRemoved(({ cid }) => {
    engine.evict(cid).catch((err: Error) => log?.error('unloading model %s failed: %s', cid, err.message))
  })
}
