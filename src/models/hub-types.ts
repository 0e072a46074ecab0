/** The model hub's public types (hub.ts), apart so its parts (hub-sources.ts) need not import hub.ts. */
import type { Logger, Stream } from '@libp2p/interface'
import type { TypedEventTarget } from 'main-event'
import type { TestHooks } from '../jobs/adversary.ts'
import type { Store } from '../store/db.ts'
import type { ModelMeta } from '../store/models.ts'
import type { Catalog } from './catalog.ts'
import type { Download } from './download.ts'
import type { FetchStats } from './fetcher.ts'
import type { ModelProvider } from './provider.ts'
import type { CacheStore, ModelSource } from './store.ts'

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
  readonly provider: ModelProvider
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
