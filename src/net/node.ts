/** The browser libp2p node: WebSockets to the relay, circuit-relay reservation, direct WebRTC. */
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { gossipsub, StrictNoSign } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { Connection, Logger, PeerId, PrivateKey } from '@libp2p/interface'
import { noise } from '@libp2p/noise'
import { webRTC } from '@libp2p/webrtc'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { WebRTC } from '@multiformats/multiaddr-matcher'
import { createLibp2p } from 'libp2p'
import { isDirect, markProven } from './link.ts'
import { keepRelays, RELAY_RESERVATIONS, type RelayKeeper } from './relays.ts'

/**
 * Largest data-channel message we send: browsers accept 256 KiB (the library's 16 KiB default is for
 * go/rust peers, which never dial us). Fewer, larger messages cut per-message JS work on both tabs.
 */
export const MAX_DATA_CHANNEL_MESSAGE = 256 * 1024

export interface NodeOptions {
  privateKey: PrivateKey
  relays: string[]
  /**
   * ICE servers (STUN/TURN), or a function giving the current ones (minted TURN credentials are
   * renewed); read at every new peer connection. Empty on loopback, where host candidates suffice.
   */
  iceServers?: RTCIceServer[] | (() => RTCIceServer[])
}

/**
 * Outside a browser @libp2p/webrtc runs on node-datachannel, whose RTCPeerConnection writes TURN
 * credentials into the server URL as they are, and libdatachannel cuts the user part at its first
 * ':' and percent-decodes it: minted `expiry:PeerId` usernames must go percent-encoded.
 */
export function forDatachannel(servers: RTCIceServer[]): RTCIceServer[] {
  return servers.map((s) =>
    typeof s.username === 'string' && typeof s.credential === 'string'
      ? { ...s, username: encodeURIComponent(s.username), credential: encodeURIComponent(s.credential) }
      : s,
  )
}

/** Node has no RTCPeerConnection of its own: @libp2p/webrtc then uses node-datachannel's. */
const viaDatachannel =
  typeof (globalThis as { RTCPeerConnection?: unknown }).RTCPeerConnection === 'undefined'

export async function createBrowserNode(opts: NodeOptions) {
  const ice = opts.iceServers ?? []
  const current = () => [...(typeof ice === 'function' ? ice() : ice)]
  const node = await createLibp2p({
    privateKey: opts.privateKey,
    // One `/p2p-circuit` per reservation wanted: the circuit transport fills each from a connected relay.
    addresses: { listen: [...Array(RELAY_RESERVATIONS).fill('/p2p-circuit'), '/webrtc'] },
    transports: [
      webSockets(),
      webRTC({
        // A fresh object per connection: the library fills in defaults on the one it gets.
        rtcConfiguration: () => ({ iceServers: viaDatachannel ? forDatachannel(current()) : current() }),
        dataChannel: { maxMessageSize: MAX_DATA_CHANNEL_MESSAGE },
      }),
      // Two at once, so a reservation attempt on a relay that just died does not hold up its replacement.
      circuitRelayTransport({
        reservationCompletionTimeout: 5000,
        reservationConcurrency: RELAY_RESERVATIONS,
      }),
    ],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // Loopback and private relays are legitimate here: the relay address comes from our own server.
    connectionGater: { denyDialMultiaddr: () => false },
    connectionManager: { maxConnections: 200 },
    // Each ping opens a data channel on every link: at the default 10 s that was most of an idle tab's
    // CPU after adverts. WebRTC reports dead links itself; yamux keep-alives cover the relay socket.
    connectionMonitor: { pingInterval: 60_000 },
    services: {
      identify: identify(),
      // Adverts are signed records themselves (src/net/advert.ts): gossipsub's own signature is not needed.
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        globalSignaturePolicy: StrictNoSign,
        // As the relay's: links signalled through one relay (or peers behind one NAT) share an IP, and
        // past 10 of them gossipsub's default scoring graylists them all, relays included: a requester
        // that opened its link budget heard no advert again (bench/README.md, Scale).
        scoreParams: { IPColocationFactorWeight: 0 },
      }),
    },
  })
  // Identify runs over every new connection: its answer proves the far side holds the link too.
  node.addEventListener('peer:identify', (e) => markProven(e.detail.connection))
  await node.start()
  return node
}

export type BrowserNode = Awaited<ReturnType<typeof createBrowserNode>>

/**
 * Keeps reservations on up to two of `relays` (src/net/relays.ts); `ready` settles after the first
 * round of dials: resolved once one relay connects, else RelayUnavailableError (it keeps trying).
 */
export function connectRelays(node: BrowserNode, relays: string[], log?: Logger): RelayKeeper {
  return keepRelays(node, relays, log ? { log } : {})
}

/** Our dialable `/p2p-circuit/webrtc` addresses, once a reservation exists. */
export function webrtcAddrs(node: BrowserNode): string[] {
  return node
    .getMultiaddrs()
    .filter((ma) => WebRTC.matches(ma))
    .map((ma) => ma.toString())
}

export { isDirect }

export function directConnection(node: BrowserNode, peer: PeerId): Connection | undefined {
  return node.getConnections(peer).find(isDirect)
}
