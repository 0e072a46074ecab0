import { logger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { TypedEventEmitter, type TypedEventTarget } from 'main-event'
import type { Capabilities as EngineCapabilities } from './compute/bridge.ts'
import type { Controls, ControlsInternals } from './compute/controls.ts'
import { createDisputeRunner } from './compute/dispute-runner.ts'
import type { ServedJob } from './jobs/handler.ts'
import type { JobOutcome, SubmitOptions } from './jobs/requester.ts'
import { type Catalog, checkInputs } from './models/catalog.ts'
import type { ModelHub } from './models/hub.ts'
import type { Capabilities } from './net/advert.ts'
import type { KnownPeer } from './net/discovery.ts'
import type { BrowserNode } from './net/node.ts'
import { buildAdverts, buildControls, engineProbe, type PeerAdverts } from './peer-compute.ts'
import { serveDisputes } from './peer-dispute.ts'
import { buildRequester, type Requester, serveJobs } from './peer-jobs.ts'
import { buildIce, buildNode, keepRelays } from './peer-net.ts'
import { buildState, type PeerState } from './peer-state.ts'
import type { PeerStatus, RelayState, StatusTracker } from './peer-status.ts'
import type { PeerEvents, PeerOptions } from './peer-types.ts'
import { InvalidOptionError, UnknownModelError } from './shared/errors.ts'
import { createLifecycle, type Lifecycle } from './shared/lifecycle.ts'
import type { NamedTensors } from './shared/tensor.ts'
import type { JobRecord } from './store/db.ts'
import type { Credits } from './trust/credits.ts'
import { policyFor } from './trust/policy.ts'
import type { Reputation } from './trust/reputation.ts'

export type { PeerEvents, PeerOptions, PeerRuntime } from './peer-types.ts'
export type { PeerStatus, RelayState }

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

const DEFAULT_JOB_HISTORY = 1000
const DEFAULT_JOB_HISTORY_BYTES = 256 * 1024 * 1024

/** The job-history limits, checked, with maxLinks. */
function checkOptions(opts: PeerOptions): { jobHistory: number; jobHistoryBytes: number } {
  const jobHistory = opts.jobHistory ?? DEFAULT_JOB_HISTORY
  if (!Number.isSafeInteger(jobHistory) || jobHistory < 0) {
    throw new InvalidOptionError(`jobHistory must be a whole number ≥ 0, got ${String(jobHistory)}`)
  }
  const jobHistoryBytes = opts.jobHistoryBytes ?? DEFAULT_JOB_HISTORY_BYTES
  if (typeof jobHistoryBytes !== 'number' || !(jobHistoryBytes >= 0)) {
    throw new InvalidOptionError(`jobHistoryBytes must be a number ≥ 0, got ${String(jobHistoryBytes)}`)
  }
  if (
    opts.maxLinks !== undefined &&
    !(Number.isSafeInteger(opts.maxLinks) && opts.maxLinks >= 1 && opts.maxLinks <= 512)
  ) {
    throw new InvalidOptionError(
      `maxLinks must be a whole number from 1 to 512, got ${String(opts.maxLinks)}`,
    )
  }
  return { jobHistory, jobHistoryBytes }
}

/**
 * Services register in this order, and stop in reverse: store, credits, writes, ICE servers,
 * controls, model unloading, node, busy count, discovery, disputes, relays, status, capacity, requester, engine probe. Each
 * builder says why its services sit where they do; a service added anywhere is stopped with the rest.
 */
export async function createPeer(opts: PeerOptions = {}): Promise<Peer> {
  const history = checkOptions(opts)
  const log = logger('peer-compute:peer')
  const events = new TypedEventEmitter<PeerEvents>()
  const emit = (type: keyof PeerEvents) => events.dispatchEvent(new Event(type))
  const serving = new Map<string, ServedJob>()
  let tracker: StatusTracker | undefined
  const life = createLifecycle(log)
  try {
    const hooks = {
      inUse: () => [...serving.values()].map((j) => j.model),
      onImport: () => void tracker?.persistStorage(),
    }
    const state = await buildState(opts, life, hooks, log)
    const selfId = peerIdFromPrivateKey(state.privateKey).toString()
    const ice = await buildIce(opts, selfId, life)
    const controls = await buildControls(opts, state, selfId, life)
    const node = await buildNode(state.privateKey, ice, life)
    const adverts = await buildAdverts(opts, { node, state, controls }, life)
    const disputeRunner = opts.runtime?.disputeRunner ?? createDisputeRunner()
    const jobs = { node, state, controls, adverts, selfId, emit, log, disputeRunner }
    // Before the job handler: jobs a requester asked to have traced run on the dispute server.
    const disputes = serveDisputes(opts, jobs, life, disputeRunner)
    await serveJobs(opts, { ...jobs, tracer: disputes }, serving)
    tracker = keepRelays({ node, discovery: adverts.discovery, ice, emit, log }, life)
    const { status } = tracker
    const requester = buildRequester(jobs, history, life)
    const onEngine = (caps: EngineCapabilities) => {
      adverts.setEngine(caps)
      status.engineReadyMs ??= performance.now()
      emit('status')
    }
    life.add('engine-probe', engineProbe(controls, onEngine, log))
    await life.start()
    return peerApi({ selfId, node, state, controls, adverts, tracker, requester, events, serving, life })
  } catch (err) {
    await life.stop().catch(() => {}) // each failure is logged
    throw err
  }
}

/** The Peer API over the built services. */
function peerApi(p: {
  selfId: string
  node: BrowserNode
  state: PeerState
  controls: ControlsInternals
  adverts: PeerAdverts
  tracker: StatusTracker
  requester: Requester
  events: TypedEventEmitter<PeerEvents>
  serving: Map<string, ServedJob>
  life: Lifecycle
}): Peer {
  const { state, controls, adverts, requester, events } = p
  const { catalog, store } = state
  const discovery = adverts.discovery
  return {
    id: p.selfId,
    node: p.node,
    catalog,
    models: state.models,
    events,
    get contributing() {
      return controls.admission.contributing
    },
    async setContributing(on) {
      await controls.setContributing(on)
      if (on) await p.tracker.persistStorage()
      events.dispatchEvent(new Event('status'))
    },
    status: () => ({ ...p.tracker.status }),
    peers: () => discovery.peers(),
    capabilities: adverts.capabilities,
    running: () => [...p.serving.values()],
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
    reputation: state.reputation,
    controls,
    credits: state.credits,
    resume: () => requester.resume(),
    stop: () => p.life.stop(),
  }
}
