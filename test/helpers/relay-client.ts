/** A Node libp2p peer that talks to a relay as a tab does (WebSockets, gossipsub), for relay tests. */
import '../../node/relay/polyfill.ts'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { gossipsub, StrictNoSign } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'

/** `reservations`: listen on /p2p-circuit twice, as a tab does, to hold reservations on two relays. */
export const relayClient = (opts: { reservations?: boolean } = {}) =>
  createLibp2p({
    ...(opts.reservations ? { addresses: { listen: ['/p2p-circuit', '/p2p-circuit'] } } : {}),
    transports: [
      webSockets(),
      ...(opts.reservations
        ? [circuitRelayTransport({ reservationCompletionTimeout: 5000, reservationConcurrency: 2 })]
        : []),
    ],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: { denyDialMultiaddr: () => false },
    services: {
      identify: identify(),
      pubsub: gossipsub({ globalSignaturePolicy: StrictNoSign, allowPublishToZeroTopicPeers: true }),
    },
  })

export type RelayClient = Awaited<ReturnType<typeof relayClient>>
