/**
 * The model hub: imports (URL, file, catalog), the local cache, and peer-to-peer distribution. A model
 * a job needs comes from the cache, then its catalog URL, then peers that hold it (the requester first).
 *
 * @example
 * const info = await peer.models.importUrl('https://example.com/model.onnx')   // NotOnnxError, ModelTooLargeError
 * peer.models.events.addEventListener('progress', (e) => console.log(e.detail.loaded, e.detail.total))
 */
import type { Logger, Stream } from '@libp2p/interface'
import { TypedEventEmitter, type TypedEventTarget } from 'main-event'
import type { TestHooks } from '../jobs/adversary.ts'
import { modelCid } from '../shared/cid.ts'
import { ModelIntegrityError, UnknownModelError } from '../shared/errors.ts'
import type { Store } from '../store/db.ts'
import type { ModelMeta } from '../store/models.ts'
import type { Catalog } from './catalog.ts'
import { type Download, download } from './download.ts'
import { type ChunkStore, type FetchStats, fetchFromPeers } from './fetcher.ts'
import { assertOnnx } from './onnx.ts'
import { createModelProvider } from './provider.ts'
import { type CacheStore, createModelCache, type GetOptions, type ModelSource } from './store.ts'

export interface ModelInfo extends ModelMeta {
  /** A job, upload or transfer holds it now: never evicted. */
  inUse: boolean
}

export interface ModelProgress {
  cid?: string
  name: string
  source: 'url' | 'peer'
  loaded: number
  total?: number
}

export interface ImportOptions {
  /** Display name; defaults to the file or catalog name. */
  name?: string
  /** Expected CID: bytes that hash otherwise give ModelIntegrityError. */
  cid?: string
  signal?: AbortSignal
}

export interface PeerFetchOptions {
  /** Providers to ask first; peers advertising the CID follow. */
  peers?: string[]
  signal?: AbortSignal
  chunkSize?: number
  /** Providers used at once (default 2). */
  parallel?: number
}

export interface TransferRecord extends FetchStats {
  cid: string
  at: number
}

/** A model that left the cache: a person deleted it, or the quota evicted it. */
export interface ModelRemoved {
  cid: string
  reason: 'deleted' | 'evicted'
}

/** The events of `peer.models.events`. */
export interface ModelHubEvents {
  /** The cached models changed (import, peer fetch, delete, eviction), or the quota did. */
  change: Event
  /** A download or peer transfer advanced. */
  progress: CustomEvent<ModelProgress>
}

/** What `peer.models` offers the UI and embedders. */
export interface ModelHub extends ModelSource {
  readonly events: TypedEventTarget<ModelHubEvents>
  list(): Promise<ModelInfo[]>
  importUrl(url: string, opts?: ImportOptions): Promise<ModelInfo>
  importFile(file: Blob | Uint8Array, opts?: ImportOptions): Promise<ModelInfo>
  importCatalog(nameOrCid: string, opts?: ImportOptions): Promise<ModelInfo>
  /** Fetches (or completes) a model from peers even if cached elsewhere; resolves with transfer stats. */
  fetchFromPeers(cid: string, opts?: PeerFetchOptions): Promise<TransferRecord>
  delete(cid: string): Promise<void>
  /** Recent peer transfers, newest first. */
  transfers(): TransferRecord[]
  readonly quotaBytes: number
  readonly maxModelBytes: number
  setQuota(bytes: number): Promise<void>
  setMaxModelBytes(bytes: number): Promise<void>
}

/** How the hub reaches peers; attached once the libp2p node and discovery exist. */
export interface ModelNetwork {
  selfId: string
  /** A `/peer-compute/model/1.0.0` stream over a direct WebRTC connection. */
  open(peer: string, signal: AbortSignal): Promise<Stream>
  /** Directly connected peers whose advert lists `cid`. */
  advertisers(cid: string): string[]
}

export interface ModelHubService extends ModelHub {
  attach(net: ModelNetwork): void
  readonly provider: ReturnType<typeof createModelProvider>
  /** Calls `fn` for each model deleted or evicted, until the returned detach (see unloadRemovedModels). */
  onRemoved(fn: (removed: ModelRemoved) => void): () => void
}

/** The store methods the hub uses: the model cache's, plus the chunks of unfinished peer transfers. */
export type HubStore = CacheStore & Pick<Store, 'getModelChunks' | 'putModelChunks' | 'clearModelChunks'>

export interface ModelHubOptions {
  store: HubStore
  catalog: Catalog
  log: Logger
  /** Models that running jobs hold, protected from eviction. */
  inUse?: () => Iterable<string>
  /** A person imported a model (URL, file or catalog): the peer asks for persistent storage. */
  onImport?: () => void
  /** Fetches a model URL (default: HTTP download); the Node peer also reads `file:` URLs. */
  download?: Download
  /** Test-only misbehaviour of the provider (src/jobs/adversary.ts); honoured in the test build only. */
  testHooks?: TestHooks
}

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
  const progress = (p: ModelProgress) => events.dispatchEvent(new CustomEvent('progress', { detail: p }))
  const cache = await createModelCache(store, {
    ...(opts.inUse ? { inUse: opts.inUse } : {}),
    onEvict: (cid) => removed(cid, 'evicted'),
  })
  const inflight = new Map<string, Promise<Uint8Array>>()
  const history: TransferRecord[] = []
  let net: ModelNetwork | undefined
  const chunks: ChunkStore = {
    load: async (cid) => new Map((await store.getModelChunks(cid)).map((c) => [c.index, c.bytes])),
    save: (cid, cs) => store.putModelChunks(cs.map((c) => ({ cid, ...c }))),
    clear: (cid) => store.clearModelChunks(cid),
  }

  async function info(cid: string): Promise<ModelInfo> {
    const meta = (await store.listModelMeta()).find((m) => m.cid === cid)
    if (meta == null) throw new UnknownModelError(`model ${cid} is not cached`)
    return { ...meta, inUse: cache.inUse(cid) }
  }

  /** Checks and stores imported bytes: size, ONNX shape, then hash (against `expect` if given). */
  async function admit(bytes: Uint8Array, name: string, expect?: string): Promise<string> {
    cache.checkSize(bytes.byteLength, name)
    assertOnnx(bytes, name)
    const cid = (await modelCid(bytes)).toString()
    if (expect && cid !== expect)
      throw new ModelIntegrityError(`${name} hashes to ${cid}, expected ${expect}`)
    await cache.put(cid, bytes, name)
    changed()
    return cid
  }

  async function fromUrl(url: string, name: string, expect: string | undefined, signal?: AbortSignal) {
    const bytes = await (opts.download ?? download)(url, {
      maxBytes: Math.min(cache.maxModelBytes(), cache.quota()),
      ...(signal ? { signal } : {}),
      onProgress: (loaded, total) =>
        progress({ ...(expect ? { cid: expect } : {}), name, source: 'url', loaded, total }),
    })
    return { cid: await admit(bytes, name, expect), bytes }
  }

  async function fromPeers(
    cid: string,
    o: PeerFetchOptions,
  ): Promise<{ bytes: Uint8Array; rec: TransferRecord }> {
    if (net == null) throw new UnknownModelError(`model ${cid}: not connected to peers`)
    const self = net.selfId
    const providers = [...new Set([...(o.peers ?? []), ...net.advertisers(cid)])].filter((p) => p !== self)
    if (providers.length === 0)
      throw new UnknownModelError(`model ${cid} is neither cached, in the catalog nor held by a peer`)
    const name = catalog.byCid(cid)?.name ?? ''
    const release = cache.use(cid)
    try {
      const { bytes, stats } = await fetchFromPeers({
        cid,
        providers,
        open: net.open,
        chunks,
        maxBytes: Math.min(cache.maxModelBytes(), cache.quota()),
        ...(o.chunkSize ? { chunkSize: o.chunkSize } : {}),
        ...(o.parallel ? { parallel: o.parallel } : {}),
        ...(o.signal ? { signal: o.signal } : {}),
        onProgress: ({ loaded, total }) => progress({ cid, name, source: 'peer', loaded, total }),
        log,
      })
      assertOnnx(bytes, `model ${cid}`)
      await cache.put(cid, bytes, name)
      await store.clearModelChunks(cid)
      const rec = { ...stats, cid, at: Date.now() }
      history.unshift(rec)
      history.length = Math.min(history.length, 20)
      log('fetched %s from peers: %d bytes in %d ms', cid, stats.size, Math.round(stats.ms))
      changed()
      return { bytes, rec }
    } finally {
      release()
    }
  }

  async function obtain(cid: string, o: GetOptions): Promise<Uint8Array> {
    const entry = catalog.byCid(cid)
    if (entry) {
      for (const url of [catalog.url(entry), ...(entry.urls ?? [])]) {
        try {
          return (await fromUrl(url, entry.name, cid, o.signal)).bytes
        } catch (err) {
          if (o.signal?.aborted) throw err
          log('model %s from %s failed: %s', entry.name, url, (err as Error).message)
        }
      }
    }
    return (await fromPeers(cid, o)).bytes
  }

  const provider = createModelProvider({
    log,
    ...(__PC_TEST_HOOKS__ && opts.testHooks ? { testHooks: opts.testHooks } : {}),
    async acquire(cid) {
      const release = cache.use(cid)
      const bytes = await cache.read(cid).catch(() => undefined)
      if (bytes == null) release()
      return bytes && { bytes, release }
    },
  })

  return {
    events,
    provider,
    attach(n) {
      net = n
    },
    onRemoved(fn) {
      removedHooks.add(fn)
      return () => void removedHooks.delete(fn)
    },
    async get(cid, o) {
      const cached = await cache.read(cid)
      if (cached) return cached
      let p = inflight.get(cid)
      if (p == null) {
        p = obtain(cid, asOptions(o)).finally(() => inflight.delete(cid))
        inflight.set(cid, p)
      }
      return p
    },
    has: async (cid) =>
      (await store.getModel(cid)) != null ||
      catalog.byCid(cid) != null ||
      (net?.advertisers(cid).length ?? 0) > 0,
    cached: async () => (await store.listModelMeta()).map((m) => m.cid),
    async list() {
      const metas = await store.listModelMeta()
      return metas.map((m) => ({ ...m, inUse: cache.inUse(m.cid) })).sort((a, b) => b.lastUsed - a.lastUsed)
    },
    async importUrl(url, o = {}) {
      opts.onImport?.()
      const name =
        o.name ?? (decodeURIComponent(new URL(url, location.href).pathname.split('/').pop() ?? '') || url)
      return info((await fromUrl(url, name, o.cid, o.signal)).cid)
    },
    async importFile(file, o = {}) {
      opts.onImport?.()
      const name = o.name ?? (file instanceof File ? file.name : 'model.onnx')
      cache.checkSize(file instanceof Blob ? file.size : file.byteLength, name) // before reading it all
      return info(
        await admit(file instanceof Blob ? new Uint8Array(await file.arrayBuffer()) : file, name, o.cid),
      )
    },
    async importCatalog(nameOrCid, o = {}) {
      opts.onImport?.()
      const entry = catalog.byName(nameOrCid) ?? catalog.byCid(nameOrCid)
      if (entry == null) throw new UnknownModelError(`"${nameOrCid}" is not in the catalog`)
      if (await cache.read(entry.cid)) return info(entry.cid)
      return info((await fromUrl(catalog.url(entry), o.name ?? entry.name, entry.cid, o.signal)).cid)
    },
    fetchFromPeers: async (cid, o = {}) => (await fromPeers(cid, o)).rec,
    async delete(cid) {
      await cache.remove(cid)
      removed(cid, 'deleted')
    },
    transfers: () => [...history],
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
