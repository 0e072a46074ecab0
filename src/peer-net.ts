/** createPeer's network (src/peer.ts): ICE servers, the libp2p node, relays and the status they make. */
import type { Logger, PrivateKey } from '@libp2p/interface'
import { iceServerSource, isLoopbackPage, loadNetConfig, parseIceServers } from './net/config.ts'
import type { Discovery } from './net/discovery.ts'
import { type BrowserNode, connectRelays, createBrowserNode } from './net/node.ts'
import { type StatusTracker, trackStatus } from './peer-status.ts'
import type { PeerEvents, PeerOptions } from './peer-types.ts'
import type { Lifecycle } from './shared/lifecycle.ts'

export interface PeerIce {
  /** The ICE servers in use now (minted TURN credentials are renewed). */
  current(): RTCIceServer[]
  relays: string[]
  /** Why peers on other networks will not connect, if so. */
  warning?: string
}

/** A page on loopback, or (outside a page) relays all on loopback: host candidates suffice. */
function onLoopback(pageUrl: string | undefined, relays: string[]): boolean {
  if (pageUrl) return isLoopbackPage(pageUrl)
  return relays.every((r) => /^\/(ip4\/127\.|ip6\/::1\/|dns4?\/localhost\/)/.test(r))
}

/** Relays and ICE servers, from the options or `peer-compute.json`; registers their renewal. */
export async function buildIce(opts: PeerOptions, peerId: string, life: Lifecycle): Promise<PeerIce> {
  const pageUrl = globalThis.location?.href
  const configUrl = opts.configUrl ?? pageUrl ?? ''
  // Outside a page with no config URL (a Node peer given its relays) there is no file to read.
  const netConfig =
    (opts.relays && opts.iceServers) || !configUrl ? undefined : await loadNetConfig(configUrl, peerId)
  // A caller's ICE servers are used as given; the config file's may be minted and renewed.
  const source = life.add(
    'ice-servers',
    iceServerSource(
      opts.iceServers
        ? { relays: [], iceServers: parseIceServers(opts.iceServers) }
        : { relays: [], iceServers: [], ...netConfig },
      configUrl,
      peerId,
    ),
  )
  const relays = opts.relays ?? netConfig?.relays ?? []
  const warning =
    source.get().length === 0 && !onLoopback(pageUrl, relays)
      ? 'No STUN/TURN servers are configured (iceServers in peer-compute.json): peers on other networks will not connect.'
      : undefined
  return { current: source.get, relays, ...(warning ? { warning } : {}) }
}

/** The libp2p node, stopped after every service that uses it and before the compute behind it. */
export async function buildNode(privateKey: PrivateKey, ice: PeerIce, life: Lifecycle): Promise<BrowserNode> {
  const node = await createBrowserNode({ privateKey, relays: [], iceServers: ice.current })
  life.add('node', { stop: () => node.stop() }) // started already: libp2p's own start() would be a no-op
  return node
}

/**
 * Reservations on up to two relays, replaced when one goes, and the status that follows them. The
 * status's start() waits for the first round of relay dials.
 */
export function keepRelays(
  o: {
    node: BrowserNode
    discovery: Discovery
    ice: PeerIce
    emit(type: keyof PeerEvents): void
    log: Logger
  },
  life: Lifecycle,
): StatusTracker {
  const keeper = life.add('relays', connectRelays(o.node, o.ice.relays, o.log))
  return life.add(
    'status',
    trackStatus({
      node: o.node,
      discovery: o.discovery,
      relays: { keeper, addrs: o.ice.relays },
      iceServers: o.ice.current,
      ...(o.ice.warning ? { warning: o.ice.warning } : {}),
      emit: o.emit,
      log: o.log,
    }),
  )
}
