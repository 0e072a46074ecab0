/**
 * Where the model hub's (`hub.ts`) bytes come from: imports (URL, file, catalog), checked before
 * they are cached, and peers that hold a model. A model a job needs comes from the cache, then its
 * catalog URL, then peers.
 */
import type { Logger } from '@libp2p/interface'
import { modelCid } from '../shared/cid.ts'
import { ModelIntegrityError, UnknownModelError } from '../shared/errors.ts'
import type { Catalog } from './catalog.ts'
import { download } from './download.ts'
import { type ChunkStore, fetchFromPeers } from './fetcher.ts'
import type {
  HubStore,
  ImportOptions,
  ModelHubOptions,
  ModelInfo,
  ModelNetwork,
  ModelProgress,
  PeerFetchOptions,
  TransferRecord,
} from './hub-types.ts'
import { assertOnnx } from './onnx.ts'
import type { GetOptions, ModelCache } from './store.ts'

/** The hub's state, shared by its methods. */
export interface HubState {
  opts: ModelHubOptions
  store: HubStore
  catalog: Catalog
  log: Logger
  cache: ModelCache
  /** Peer fetches by CID, so that concurrent gets of one model share one. */
  inflight: Map<string, Promise<Uint8Array>>
  /** Recent peer transfers, newest first. */
  history: TransferRecord[]
  net: ModelNetwork | undefined
  chunks: ChunkStore
  changed(): void
  progress(p: ModelProgress): void
}

/** The chunks of unfinished peer transfers, kept in the store so that a fetch can resume. */
export function storedChunks(store: HubStore): ChunkStore {
  return {
    load: async (cid) => new Map((await store.getModelChunks(cid)).map((c) => [c.index, c.bytes])),
    save: (cid, cs) => store.putModelChunks(cs.map((c) => ({ cid, ...c }))),
    clear: (cid) => store.clearModelChunks(cid),
  }
}

export async function info(s: HubState, cid: string): Promise<ModelInfo> {
  const meta = (await s.store.listModelMeta()).find((m) => m.cid === cid)
  if (meta == null) throw new UnknownModelError(`model ${cid} is not cached`)
  return { ...meta, inUse: s.cache.inUse(cid) }
}

/** Checks and stores imported bytes: size, ONNX shape, then hash (against `expect` if given). */
async function admit(s: HubState, bytes: Uint8Array, name: string, expect?: string): Promise<string> {
  s.cache.checkSize(bytes.byteLength, name)
  assertOnnx(bytes, name)
  const cid = (await modelCid(bytes)).toString()
  if (expect && cid !== expect) throw new ModelIntegrityError(`${name} hashes to ${cid}, expected ${expect}`)
  await s.cache.put(cid, bytes, name)
  s.changed()
  return cid
}

async function fromUrl(
  s: HubState,
  url: string,
  name: string,
  expect: string | undefined,
  signal?: AbortSignal,
) {
  const bytes = await (s.opts.download ?? download)(url, {
    maxBytes: Math.min(s.cache.maxModelBytes(), s.cache.quota()),
    ...(signal ? { signal } : {}),
    onProgress: (loaded, total) =>
      s.progress({ ...(expect ? { cid: expect } : {}), name, source: 'url', loaded, total }),
  })
  return { cid: await admit(s, bytes, name, expect), bytes }
}

export async function fromPeers(
  s: HubState,
  cid: string,
  o: PeerFetchOptions,
): Promise<{ bytes: Uint8Array; rec: TransferRecord }> {
  const { net, cache, log } = s
  if (net == null) throw new UnknownModelError(`model ${cid}: not connected to peers`)
  const self = net.selfId
  const providers = [...new Set([...(o.peers ?? []), ...net.advertisers(cid)])].filter((p) => p !== self)
  if (providers.length === 0)
    throw new UnknownModelError(`model ${cid} is neither cached, in the catalog nor held by a peer`)
  const name = s.catalog.byCid(cid)?.name ?? ''
  const release = cache.use(cid)
  try {
    const { bytes, stats } = await fetchFromPeers({
      cid,
      providers,
      open: net.open,
      chunks: s.chunks,
      maxBytes: Math.min(cache.maxModelBytes(), cache.quota()),
      ...(o.chunkSize ? { chunkSize: o.chunkSize } : {}),
      ...(o.parallel ? { parallel: o.parallel } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
      onProgress: ({ loaded, total }) => s.progress({ cid, name, source: 'peer', loaded, total }),
      log,
    })
    assertOnnx(bytes, `model ${cid}`)
    await cache.put(cid, bytes, name)
    await s.store.clearModelChunks(cid)
    const rec = { ...stats, cid, at: Date.now() }
    s.history.unshift(rec)
    s.history.length = Math.min(s.history.length, 20)
    log('fetched %s from peers: %d bytes in %d ms', cid, stats.size, Math.round(stats.ms))
    s.changed()
    return { bytes, rec }
  } finally {
    release()
  }
}

async function obtain(s: HubState, cid: string, o: GetOptions): Promise<Uint8Array> {
  const entry = s.catalog.byCid(cid)
  if (entry) {
    for (const url of [s.catalog.url(entry), ...(entry.urls ?? [])]) {
      try {
        return (await fromUrl(s, url, entry.name, cid, o.signal)).bytes
      } catch (err) {
        if (o.signal?.aborted) throw err
        s.log('model %s from %s failed: %s', entry.name, url, (err as Error).message)
      }
    }
  }
  return (await fromPeers(s, cid, o)).bytes
}

/** A model's bytes: cached, else obtained once however many ask for it at the same time. */
export async function getModel(s: HubState, cid: string, o: GetOptions): Promise<Uint8Array> {
  const cached = await s.cache.read(cid)
  if (cached) return cached
  let p = s.inflight.get(cid)
  if (p == null) {
    p = obtain(s, cid, o).finally(() => s.inflight.delete(cid))
    s.inflight.set(cid, p)
  }
  return p
}

export async function importUrl(s: HubState, url: string, o: ImportOptions): Promise<ModelInfo> {
  s.opts.onImport?.()
  const name =
    o.name ?? (decodeURIComponent(new URL(url, location.href).pathname.split('/').pop() ?? '') || url)
  return info(s, (await fromUrl(s, url, name, o.cid, o.signal)).cid)
}

export async function importFile(s: HubState, file: Blob | Uint8Array, o: ImportOptions): Promise<ModelInfo> {
  s.opts.onImport?.()
  const name = o.name ?? (file instanceof File ? file.name : 'model.onnx')
  s.cache.checkSize(file instanceof Blob ? file.size : file.byteLength, name) // before reading it all
  const bytes = file instanceof Blob ? new Uint8Array(await file.arrayBuffer()) : file
  return info(s, await admit(s, bytes, name, o.cid))
}

export async function importCatalog(s: HubState, nameOrCid: string, o: ImportOptions): Promise<ModelInfo> {
  s.opts.onImport?.()
  const entry = s.catalog.byName(nameOrCid) ?? s.catalog.byCid(nameOrCid)
  if (entry == null) throw new UnknownModelError(`"${nameOrCid}" is not in the catalog`)
  if (await s.cache.read(entry.cid)) return info(s, entry.cid)
  return info(s, (await fromUrl(s, s.catalog.url(entry), o.name ?? entry.name, entry.cid, o.signal)).cid)
}
