/** Composes storage, identity, network, discovery, compute and jobs into one Peer. */
import type { PrivateKey } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { TypedEventEmitter, type TypedEventTarget } from 'main-event'
import type { Capabilities as EngineCapabilities, InferenceEngine } from './compute/bridge.ts'
import { type Controls, createControls } from './compute/controls.ts'
import { settleUsed } from './compute/settled-used.ts'
import { createAdaptive } from './jobs/adaptive.ts'
import type { TestHooks } from './jobs/adversary.ts'
import { createCapacityWaiters } from './jobs/capacity.ts'
import { createDispatcher } from './jobs/dispatch.ts'
import { createExecutor } from './jobs/execute.ts'
import { createJobHandler, type ServedJob } from './jobs/handler.ts'
import { createStoreJournal } from './jobs/journal.ts'
import { createRequester, type JobOutcome, type SubmitOptions } from './jobs/requester.ts'
import { createScheduler } from './jobs/scheduler.ts'
import { type Catalog, checkInputs, loadCatalog } from './models/catalog.ts'
import type { Download } from './models/download.ts'
import { createModelHub, type ModelHub } from './models/hub.ts'
import { connectModelHub } from './models/network.ts'
import type { Capabilities } from './net/advert.ts'
import { iceServerSource, isLoopbackPage, loadNetConfig, parseIceServers } from './net/config.ts'
import { createDiscovery, type KnownPeer } from './net/discovery.ts'
import { linkPlanDefaults } from './net/link-plan.ts'
import { type BrowserNode, connectRelays, createBrowserNode, directConnection } from './net/node.ts'
import { type PeerStatus, type RelayState, trackStatus } from './peer-status.ts'
import { InvalidOptionError, UnknownModelError } from './shared/errors.ts'
import { SOFTWARE_VERSION } from './shared/protocol.ts'
import type { NamedTensors } from './shared/tensor.ts'
import { type JobRecord, openStore, type Store } from './store/db.ts'
import { type Credits, createCredits, type Locks } from './trust/credits.ts'
import { loadOrCreateIdentity } from './trust/identity.ts'
import { policyFor } from './trust/policy.ts'
import { createReputation, type Reputation } from './trust/reputation.ts'

/** Time constant of the advertised busy count's average (src/compute/settled-used.ts). */
const BUSY_AVERAGE_MS = 500

export interface PeerOptions {
  /** Relay multiaddrs; by default read from `peer-compute.json` next to the page. */
  relays?: string[]
  /**
   * STUN/TURN servers for WebRTC, passed to every RTCPeerConnection as given; by default read from
   * `peer-compute.json` (which may mint time-limited TURN credentials, renewed before they expire).
   */
  iceServers?: RTCIceServer[]
  /** Where `peer-compute.json` is looked up (its folder); default the page's URL. */
  configUrl?: string
  /** Catalog URL; default `models/catalog.json` relative to the page. */
  catalogUrl?: string
  /** IndexedDB database name, so several peers can share an origin. */
  storeName?: string
  contribute?: boolean
  maxSlots?: number
  engine?: InferenceEngine
  /** One compute tab per browser (Web Locks election); the app and the widget turn it on. */
  election?: boolean
  /** Start no inference worker until this tab contributes or runs a job of its own. */
  lazyEngine?: boolean
  advertIntervalMs?: number
  /** Direct links this peer dials at most (default 32; a quarter of them kept with no jobs to place). */
  maxLinks?: number
  /**
   * Ended jobs whose records (outputs included) stay in IndexedDB, newest first (default 1000):
   * older ones are deleted, so an `id` whose record is gone runs again.
   */
  jobHistory?: number
  /**
   * …and at most this many bytes of them (default 256 MiB; `Infinity` for no byte limit), a soft cap:
   * the newest ended job's record is kept whatever its size.
   */
  jobHistoryBytes?: number
  /**
   * Test-only misbehaviour of the job handler and the model provider (src/jobs/adversary.ts); ignored
   * outside the test build (dist-test/).
   */
  testHooks?: TestHooks
  /** For a peer outside a tab (node/peer.ts): what it has in place of the tab's platform. */
  runtime?: PeerRuntime
}

/**
 * What a tab takes from the browser (IndexedDB, an identity slot, catalog.json, Web Locks), given
 * instead by a peer that runs elsewhere. Everything else is the same code on both.
 */
export interface PeerRuntime {
  store: Store
  privateKey: PrivateKey
  catalog: Catalog
  locks: Locks
  /** Model URL fetches (a Node peer also reads `file:` URLs). */
  download?: Download
}

export type { PeerStatus, RelayState }

/** The events of `peer.events`: plain Events, read the new state from the peer. */
export interface PeerEvents {
  /** status() changed: relay, links, ICE servers, contributing, engine capabilities. */
  status: Event
  /** peers() changed. */
  peers: Event
  /** A job this peer submitted changed (jobs(), job()). */
  jobs: Event
  /** running() changed: a served job started or ended. */
  serving: Event
}

export interface Peer {
  readonly id: string
  /** The underlying libp2p node, for embedders that add their own protocols. */
  readonly node: BrowserNode
  readonly catalog: Catalog
  /** Model hub: imports, the cache with its quota, and peer-to-peer transfers (src/models/hub.ts). */
  readonly models: ModelHub
  readonly events: TypedEventTarget<PeerEvents>
  readonly contributing: boolean
  setContributing(on: boolean): Promise<void>
  status(): PeerStatus
  peers(): KnownPeer[]
  capabilities(): Capabilities
  running(): ServedJob[]
  /**
   * Runs `model` (a CID or catalog name) on contributors under a verification policy (defaults per
   * task type) and resolves once a quorum agrees; rejects with JobFailedError or JobInconclusiveError.
   */
  submit(model: string, inputs: NamedTensors, opts?: SubmitOptions): Promise<JobOutcome>
  jobs(limit?: number): Promise<JobRecord[]>
  job(id: string): Promise<JobRecord | undefined>
  /** Per-peer valid / invalid / timed-out counts; untrusted peers are not chosen. */
  readonly reputation: Reputation
  /** Contributor settings, pause/resume, the compute-tab election, running jobs and totals. */
  readonly controls: Controls
  /** This browser's credit log: signed receipts of the jobs it served. */
  readonly credits: Credits
  /** Resumes jobs a previous page left unfinished (also done automatically at start). */
  resume(): Promise<JobOutcome[]>
  stop(): Promise<void>
}

/** A page on loopback, or (outside a page) relays all on loopback: host candidates suffice. */
function onLoopback(pageUrl: string | undefined, relays: string[]): boolean {
  if (pageUrl) return isLoopbackPage(pageUrl)
  return relays.every((r) => /^\/(ip4\/127\.|ip6\/::1\/|dns4?\/localhost\/)/.test(r))
}

const DEFAULT_JOB_HISTORY = 1000
const DEFAULT_JOB_HISTORY_BYTES = 256 * 1024 * 1024

export async function createPeer(opts: PeerOptions = {}): Promise<Peer> {
  const history = opts.jobHistory ?? DEFAULT_JOB_HISTORY
  if (!Number.isSafeInteger(history) || history < 0) {
    throw new InvalidOptionError(`jobHistory must be a whole number ≥ 0, got ${String(history)}`)
  }
  const historyBytes = opts.jobHistoryBytes ?? DEFAULT_JOB_HISTORY_BYTES
  if (typeof historyBytes !== 'number' || !(historyBytes >= 0)) {
    throw new InvalidOptionError(`jobHistoryBytes must be a number ≥ 0, got ${String(historyBytes)}`)
  }
  if (
    opts.maxLinks !== undefined &&
    !(Number.isSafeInteger(opts.maxLinks) && opts.maxLinks >= 1 && opts.maxLinks <= 512)
  ) {
    throw new InvalidOptionError(
      `maxLinks must be a whole number from 1 to 512, got ${String(opts.maxLinks)}`,
    )
  }
  const log = logger('peer-compute:peer')
  const events = new TypedEventEmitter<PeerEvents>()
  const emit = (type: keyof PeerEvents) => events.dispatchEvent(new Event(type))
  const storeName = opts.storeName ?? 'peer-compute'
  const rt = opts.runtime
  const store = rt?.store ?? (await openStore(storeName))
  const privateKey = rt?.privateKey ?? (await loadOrCreateIdentity(store, storeName))
  const catalog =
    rt?.catalog ??
    (await loadCatalog(opts.catalogUrl ?? new URL('models/catalog.json', location.href).toString()))
  const models = await createModelHub({
    store,
    catalog,
    log: logger('peer-compute:models'),
    ...(rt?.download ? { download: rt.download } : {}),
    ...(__PC_TEST_HOOKS__ && opts.testHooks ? { testHooks: opts.testHooks } : {}),
    inUse: () => [...serving.values()].map((j) => j.model), // called only after setup
    onImport: () => void tracker.persistStorage(), // called only after setup
  })
  const peerIdText = peerIdFromPrivateKey(privateKey).toString()
  const pageUrl = globalThis.location?.href
  const configUrl = opts.configUrl ?? pageUrl ?? ''
  // Outside a page with no config URL (a Node peer given its relays) there is no file to read.
  const netConfig =
    (opts.relays && opts.iceServers) || !configUrl ? undefined : await loadNetConfig(configUrl, peerIdText)
  // A caller's ICE servers are used as given; the config file's may be minted and renewed.
  const iceSource = iceServerSource(
    opts.iceServers
      ? { relays: [], iceServers: parseIceServers(opts.iceServers) }
      : { relays: [], iceServers: [], ...netConfig },
    configUrl,
    peerIdText,
  )
  const currentIce = iceSource.get
  const warning =
    currentIce().length === 0 && !onLoopback(pageUrl, opts.relays ?? netConfig?.relays ?? [])
      ? 'No STUN/TURN servers are configured (iceServers in peer-compute.json): peers on other networks will not connect.'
      : undefined
  let caps: EngineCapabilities | undefined
  let cached: string[] = await models.cached()
  const serving = new Map<string, ServedJob>()

  const node = await createBrowserNode({ privateKey, relays: [], iceServers: currentIce })
  const selfId = node.peerId.toString()
  const controls = await createControls({
    store,
    storeName,
    selfId,
    modelSource: (cid, signal) => models.get(cid, signal),
    modelLimits: models,
    contribute: opts.contribute,
    maxSlots: opts.maxSlots,
    engine: opts.engine,
    election: opts.election,
    lazyEngine: opts.lazyEngine,
  })
  const { admission, engine } = controls
  const credits = await createCredits({ store, storeName, privateKey, ...(rt ? { locks: rt.locks } : {}) })
  const busy = settleUsed({ read: () => admission.used, tauMs: BUSY_AVERAGE_MS })
  const advertisedFree = () => (admission.active ? Math.max(0, admission.capacity - busy.value) : 0)
  const adapterClass = () => {
    const a = caps?.adapter
    return a ? `${a.architecture || a.vendor || 'unknown'}${a.isFallback ? ' (fallback)' : ''}` : 'none'
  }
  const capabilities = (): Capabilities => ({
    eps: caps?.eps ?? [],
    adapter: adapterClass(),
    threads: caps?.threads ?? 0,
    slots: advertisedFree(),
    maxSlots: admission.maxSlots,
    contributing: admission.active,
    models: cached.slice(0, 256),
    benchUs: 0,
    version: SOFTWARE_VERSION,
    ort: caps?.ortVersion ?? '',
  })
  const discovery = createDiscovery({
    node,
    privateKey,
    capabilities,
    log: logger('peer-compute:discovery'),
    ...(opts.advertIntervalMs ? { intervalMs: opts.advertIntervalMs } : {}),
    ...(opts.maxLinks ? { links: linkPlanDefaults(opts.maxLinks) } : {}),
  })
  const scheduler = createScheduler(discovery, selfId)
  const jobHandler = createJobHandler({
    privateKey,
    selfId,
    admission,
    engine: controls.jobEngine,
    models,
    log: logger('peer-compute:jobs'),
    adapter: adapterClass,
    ...(__PC_TEST_HOOKS__ && opts.testHooks ? { testHooks: opts.testHooks } : {}),
    onStart: (j) => {
      serving.set(j.job, j)
      controls.jobStarted(j)
      emit('serving')
    },
    onEnd: async (j, outcome) => {
      serving.delete(j.job)
      controls.jobEnded(j, outcome)
      emit('serving')
      if (outcome.receipt) await credits.append(outcome.receipt).catch((e) => log.error('credit log: %s', e))
    },
  })
  await node.handle(jobHandler.protocol, jobHandler.handler, { maxInboundStreams: 64 })
  await connectModelHub(models, {
    node,
    discovery,
    onCached: (cids) => {
      cached = cids
      discovery.announce()
    },
  })
  const reputation = await createReputation(store)
  // Held-back writes (new jobs' state, reputation, credits) start now: the page may not get another chance.
  const flushWrites = () => Promise.all([store.flushJobStates(), reputation.flush(), credits.flush()])
  const onHide = () => void flushWrites().catch(() => {})
  globalThis.addEventListener?.('pagehide', onHide)
  const adaptive = createAdaptive(reputation)
  const capacity = createCapacityWaiters(
    [
      [discovery.events, 'change'],
      [scheduler.events, 'release'],
    ],
    { free: () => scheduler.freeSlots(reputation.trusted) },
  )
  const requester = createRequester({
    dispatcher: createDispatcher({
      links: {
        direct: (peer) => directConnection(node, peerIdFromString(peer)),
        redial: (peer, signal) => discovery.redial(peer, signal),
      },
      privateKey,
      selfId,
      scheduler,
      execute: createExecutor({ privateKey, selfId, engine, models, adapter: adapterClass }),
    }),
    selfId,
    scheduler,
    journal: createStoreJournal({
      store,
      log: logger('peer-compute:requester'),
      onChange: () => emit('jobs'),
      jobHistory: history,
      jobHistoryBytes: historyBytes,
    }),
    reputation,
    adaptive,
    outputsOf: (cid) => catalog.byCid(cid)?.outputs,
    log: logger('peer-compute:requester'),
    capacityChanged: (signal) => capacity.wait(signal),
    noPath: () => discovery.noPath(),
  })

  admission.events.addEventListener('change', () => {
    busy.update() // may change busy.value, whose event then tells discovery
    discovery.capabilitiesChanged()
  })
  busy.events.addEventListener('change', () => discovery.capabilitiesChanged())

  const relays = opts.relays ?? netConfig?.relays ?? []
  const relayKeeper = connectRelays(node, relays, log) // reservations on up to two, replaced when one goes
  const tracker = trackStatus({
    node,
    discovery,
    relays: { keeper: relayKeeper, addrs: relays },
    iceServers: currentIce,
    ...(warning ? { warning } : {}),
    emit,
    log,
  })
  const status = tracker.status
  await tracker.relayReady()
  // Jobs a previous page of this tab left unfinished carry on, each at most once.
  void requester.resume()
  // Probe the engine in the background: adverts gain eps/adapter once it answers (again after a settings change).
  const probe = () =>
    engine
      .capabilities()
      .then((c) => {
        caps = c
        status.engineReadyMs ??= performance.now()
        discovery.announce()
        emit('status')
      })
      .catch((err) => log.error('engine probe failed: %s', (err as Error).message))
  void probe()
  controls.events.addEventListener('engine', () => void probe())

  return {
    id: selfId,
    node,
    catalog,
    models,
    events,
    get contributing() {
      return admission.contributing
    },
    async setContributing(on) {
      await controls.setContributing(on)
      if (on) await tracker.persistStorage()
      emit('status')
    },
    status: () => ({ ...status }),
    peers: () => discovery.peers(),
    capabilities,
    running: () => [...serving.values()],
    async submit(model, inputs, sopts = {}) {
      const entry = catalog.byCid(model) ?? catalog.byName(model)
      const cid = entry?.cid ?? model
      if (!/^b[a-z2-7]{20,}$/.test(cid))
        throw new UnknownModelError(`"${model}" is neither a catalog name nor a CID`)
      if (entry) checkInputs(entry, inputs)
      discovery.want(cid)
      return requester.submit(cid, entry?.name ?? cid, policyFor(entry?.task, sopts.policy), inputs, sopts)
    },
    jobs: (limit) => store.listJobs(limit),
    job: (id) => store.getJob(id),
    reputation,
    controls,
    credits,
    resume: () => requester.resume(),
    async stop() {
      globalThis.removeEventListener?.('pagehide', onHide)
      tracker.stop()
      iceSource.stop()
      relayKeeper.stop()
      discovery.stop()
      busy.stop()
      requester.close()
      capacity.stop()
      await node.stop()
      controls.stop()
      engine.close()
      await flushWrites().catch((e) => log.error('writes at stop: %s', e))
      credits.close()
      store.close()
    },
  }
}
