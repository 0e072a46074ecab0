/** createPeer's compute (src/peer.ts): the contributor controls, and what the peer advertises of them. */
import type { Logger } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import type { Capabilities as EngineCapabilities } from './compute/bridge.ts'
import { type ControlsInternals, createControls } from './compute/controls.ts'
import { settleUsed } from './compute/settled-used.ts'
import { unloadRemovedModels } from './models/hub.ts'
import { connectModelHub } from './models/network.ts'
import type { Capabilities } from './net/advert.ts'
import { createDiscovery, type Discovery } from './net/discovery.ts'
import { linkPlanDefaults } from './net/link-plan.ts'
import type { BrowserNode } from './net/node.ts'
import type { PeerState } from './peer-state.ts'
import type { PeerOptions } from './peer-types.ts'
import type { Lifecycle, Service } from './shared/lifecycle.ts'
import { SOFTWARE_VERSION } from './shared/protocol.ts'

/** Time constant of the advertised busy count's average (src/compute/settled-used.ts). */
const BUSY_AVERAGE_MS = 500

/**
 * The controls, registered before the node: the node stops first, so a served job ends as a lost
 * link (its requester sends it elsewhere), not as a closed engine's error.
 */
export function buildControls(
  opts: PeerOptions,
  state: PeerState,
  selfId: string,
  life: Lifecycle,
): Promise<ControlsInternals> {
  const { store, storeName, models } = state
  return createControls({
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
  }).then((controls) => {
    life.add('controls', controls)
    // A model the hub deletes or evicts for its quota leaves the engine's workers too.
    const detach = unloadRemovedModels(models, controls.engine, logger('peer-compute:models'))
    life.add('model unloading', { stop: detach })
    return controls
  })
}

export interface PeerAdverts {
  discovery: Discovery
  capabilities(): Capabilities
  /** The GPU adapter's class for adverts and receipts ('none' before the engine answers). */
  adapterClass(): string
  /** The engine answered its probe. */
  setEngine(caps: EngineCapabilities): void
}

/**
 * What this peer advertises (its engine, free slots, cached models) and the discovery that
 * publishes it, wired to the model hub. Registered after the node: they stop before it, so no
 * advert or dial follows the node's stop.
 */
export async function buildAdverts(
  opts: PeerOptions,
  o: { node: BrowserNode; state: PeerState; controls: ControlsInternals },
  life: Lifecycle,
): Promise<PeerAdverts> {
  const { admission } = o.controls
  let caps: EngineCapabilities | undefined
  let cached = await o.state.models.cached()
  const busy = life.add('busy', settleUsed({ read: () => admission.used, tauMs: BUSY_AVERAGE_MS }))
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
  const discovery = life.add(
    'discovery',
    createDiscovery({
      node: o.node,
      privateKey: o.state.privateKey,
      capabilities,
      log: logger('peer-compute:discovery'),
      ...(opts.advertIntervalMs ? { intervalMs: opts.advertIntervalMs } : {}),
      ...(opts.maxLinks ? { links: linkPlanDefaults(opts.maxLinks) } : {}),
    }),
  )
  admission.events.addEventListener('change', () => {
    busy.update() // may change busy.value, whose event then tells discovery
    discovery.capabilitiesChanged()
  })
  busy.events.addEventListener('change', () => discovery.capabilitiesChanged())
  await connectModelHub(o.state.models, {
    node: o.node,
    discovery,
    onCached: (cids) => {
      cached = cids
      discovery.announce()
    },
  })
  const setEngine = (c: EngineCapabilities) => {
    caps = c
    discovery.announce()
  }
  return { discovery, capabilities, adapterClass, setEngine }
}

/**
 * Probes the engine in the background from start(): adverts gain eps/adapter once it answers, and
 * again after a settings change.
 */
export function engineProbe(
  controls: ControlsInternals,
  onAnswer: (caps: EngineCapabilities) => void,
  log: Logger,
): Service {
  const probe = () =>
    controls.engine
      .capabilities()
      .then(onAnswer)
      .catch((err) => log.error('engine probe failed: %s', (err as Error).message))
  const onEngine = () => void probe()
  return {
    start() {
      void probe()
      controls.events.addEventListener('engine', onEngine)
    },
    stop: () => controls.events.removeEventListener('engine', onEngine),
  }
}
