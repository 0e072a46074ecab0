import './polyfill.ts'
import { circuitRelayServer } from '@libp2p/circuit-relay-v2'
import { gossipsub, StrictNoSign, TopicValidatorResult } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { PrivateKey } from '@libp2p/interface'
import { noise } from '@libp2p/noise'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { createLibp2p, type Libp2p } from 'libp2p'
import { openAdvert } from '../net/advert.ts'
import { ADVERT_TOPIC } from '../shared/protocol.ts'

export interface RelayOptions {
  privateKey: PrivateKey
  host?: string
  port?: number
  log?: (line: string) => void
}

export interface Relay {
  node: Libp2p
  multiaddrs: string[]
  stop(): Promise<void>
}

/**
 * A circuit-relay-v2 server and gossipsub hub for browser peers. It carries WebRTC signalling
 * and adverts only: it subscribes to the advert topic so it can forward them, and registers no
 * job or model protocol, so job payloads cannot pass through it. It forwards only adverts that
 * open (size, shape, and the signature of the peer they name) and rejects the rest; no peer
 * scoring is configured, so a rejection drops the message and costs its sender nothing more.
 */
export async function createRelay(opts: RelayOptions): Promise<Relay> {
  const log = opts.log ?? (() => {})
  const node = await createLibp2p({
    privateKey: opts.privateKey,
    addresses: { listen: [`/ip4/${opts.host ?? '127.0.0.1'}/tcp/${opts.port ?? 0}/ws`] },
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { maxConnections: 1024 },
    services: {
      identify: identify(),
      relay: circuitRelayServer({ reservations: { maxReservations: 1024 } }),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        D: 8,
        Dlo: 4,
        Dhi: 16,
        globalSignaturePolicy: StrictNoSign, // as the tabs: adverts carry their own signature
      }),
    },
  })
  node.addEventListener('peer:connect', (e) => log(`connect ${e.detail.toString()}`))
  node.addEventListener('peer:disconnect', (e) => log(`disconnect ${e.detail.toString()}`))
  // At most one log line per 10 s: a peer that floods bad adverts must not flood the log too.
  let loggedAt = Number.NEGATIVE_INFINITY
  let unlogged = 0
  node.services.pubsub.topicValidators.set(ADVERT_TOPIC, (peer, msg) =>
    openAdvert(msg.data).then(
      () => TopicValidatorResult.Accept,
      (err: Error) => {
        if (Date.now() - loggedAt < 10_000) unlogged++
        else {
          const more = unlogged ? ` (and ${unlogged} more since the last line)` : ''
          log(
            `refused an advert from ${peer.toString()}: ${JSON.stringify(`${err.name}: ${err.message}`.slice(0, 200))}${more}`,
          )
          loggedAt = Date.now()
          unlogged = 0
        }
        return TopicValidatorResult.Reject
      },
    ),
  )
  node.services.pubsub.subscribe(ADVERT_TOPIC)
  await node.start()
  const multiaddrs = node.getMultiaddrs().map((ma) => ma.toString())
  return {
    node,
    multiaddrs,
    stop: async () => {
      await node.stop()
    },
  }
}
