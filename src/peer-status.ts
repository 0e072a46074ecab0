/** A peer's status for the header and `peer.status()`: relay state, links and their paths, milestones. */
import type { Logger } from '@libp2p/interface'
import type { Discovery } from './net/discovery.ts'
import type { LinkPath } from './net/link.ts'
import { type BrowserNode, isDirect, webrtcAddrs } from './net/node.ts'
import type { RelayKeeper } from './net/relays.ts'
import type { Service } from './shared/lifecycle.ts'

export type RelayState = 'connecting' | 'connected' | 'disconnected'

export interface PeerStatus {
  relay: RelayState
  webrtcAddrs: string[]
  directPeers: number
  /** Direct links by path: host (LAN or this machine), STUN (through NAT) or TURN (relayed). */
  paths: Record<LinkPath, number>
  /** ICE servers in use (0 on loopback is fine). */
  iceServers: number
  /** Set when peers on other networks cannot connect (no ICE servers off loopback), in words. */
  networkWarning?: string
  /** Whether the browser granted persistent storage (asked when contributing or importing a model). */
  storage?: 'persisted' | 'best-effort' | 'unavailable'
  /** ms since the page's time origin (navigation) when the relay / first direct WebRTC link came up. */
  relayConnectedMs?: number
  firstDirectMs?: number
  firstAdvertMs?: number
  engineReadyMs?: number
}

export interface StatusTracker extends Service {
  readonly status: PeerStatus
  /** Re-reads links and ICE servers, then emits 'status'. */
  refresh(): void
  /** Resolves once the first round of relay dials settled (the state says how). */
  start(): Promise<void>
  /** Asks the browser for persistent storage (once contributing or importing) and records its answer. */
  persistStorage(): Promise<void>
  stop(): void
}

interface StatusOptions {
  node: BrowserNode
  discovery: Discovery
  relays: { keeper: RelayKeeper; addrs: string[] }
  iceServers: () => RTCIceServer[]
  warning?: string
  emit(type: 'status' | 'peers'): void
  log: Logger
}

/**
 * Follows the node, discovery and the relay keeper; emits 'status' and 'peers' on `emit`. Paths are
 * learned after a link opens, and adverts come far more often and change none of them, so an advert
 * refreshes the status only when some link's path changed.
 */
export function trackStatus(o: StatusOptions): StatusTracker {
  const status: PeerStatus = {
    relay: 'connecting',
    webrtcAddrs: [],
    directPeers: 0,
    paths: { host: 0, stun: 0, turn: 0 },
    iceServers: o.iceServers().length,
    ...(o.warning ? { networkWarning: o.warning } : {}),
  }
  const refresh = () => refreshStatus(o, status)
  const unwatch = watch(o, status, refresh)
  return {
    status,
    refresh,
    async start() {
      try {
        await o.relays.keeper.ready
        status.relay = 'connected'
        status.relayConnectedMs ??= performance.now()
      } catch (err) {
        status.relay = 'disconnected'
        o.log.error('%s', (err as Error).message)
      }
      refresh()
    },
    // Without persistent storage the browser may evict models and the credit log under pressure.
    async persistStorage() {
      const storage = globalThis.navigator?.storage
      if (typeof storage?.persist !== 'function') status.storage = 'unavailable'
      else status.storage = (await storage.persist().catch(() => false)) ? 'persisted' : 'best-effort'
      o.emit('status')
    },
    stop() {
      unwatch()
    },
  }
}

/** Re-reads links and ICE servers into `status`, then emits 'status'. */
function refreshStatus(o: StatusOptions, status: PeerStatus): void {
  const { node, discovery } = o
  status.webrtcAddrs = webrtcAddrs(node)
  status.directPeers = node.getConnections().filter(isDirect).length
  status.paths = { host: 0, stun: 0, turn: 0 }
  for (const p of discovery.peers()) if (p.direct && p.path) status.paths[p.path]++
  status.iceServers = o.iceServers().length
  if (status.directPeers > 0) status.firstDirectMs ??= performance.now()
  o.emit('status')
}

/** Listens to the node and discovery; returns what stops listening. */
function watch(o: StatusOptions, status: PeerStatus, refresh: () => void): () => void {
  const { node, discovery } = o
  let pathKey = ''
  const onPeers = () => {
    if (discovery.peers().length > 0) status.firstAdvertMs ??= performance.now()
    o.emit('peers')
    const key = discovery
      .peers()
      .map((p) => (p.direct ? (p.path ?? '?') : '-'))
      .join()
    if (key !== pathKey) {
      pathKey = key
      refresh()
    }
  }
  // Connected while any configured relay is: a tab on two relays loses nothing when one goes.
  const relayPeers = new Set(o.relays.addrs.map((r) => r.split('/p2p/').pop()))
  const onRelayPeer = (e: CustomEvent) => {
    const id = e.detail.toString()
    const up = o.relays.keeper.connected().length > 0
    if (!relayPeers.has(id) || up === (status.relay === 'connected')) return
    status.relay = up ? 'connected' : 'disconnected'
    if (up) status.relayConnectedMs ??= performance.now()
    refresh()
  }
  node.addEventListener('self:peer:update', refresh)
  node.addEventListener('connection:open', refresh)
  node.addEventListener('connection:close', refresh)
  node.addEventListener('peer:connect', onRelayPeer)
  node.addEventListener('peer:disconnect', onRelayPeer)
  discovery.events.addEventListener('change', onPeers)
  return () => {
    node.removeEventListener('self:peer:update', refresh)
    node.removeEventListener('connection:open', refresh)
    node.removeEventListener('connection:close', refresh)
    node.removeEventListener('peer:connect', onRelayPeer)
    node.removeEventListener('peer:disconnect', onRelayPeer)
    discovery.events.removeEventListener('change', onPeers)
  }
}
