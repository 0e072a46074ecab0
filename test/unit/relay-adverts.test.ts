/**
 * The relay forwards only adverts that open: two Node peers over real WebSockets and Noise on
 * 127.0.0.1, one publishing a forged advert between two valid ones, the other listening.
 */
import '../../node/relay/polyfill.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { type GossipSub, gossipsub, StrictNoSign } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { PrivateKey } from '@libp2p/interface'
import { noise } from '@libp2p/noise'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { WebSocket as NodeWebSocket } from 'ws'
import { createRelay, type Relay } from '../../node/relay/relay.ts'
import { MAX_ADVERT_BYTES, signAdvert } from '../../src/net/advert.ts'
import { ADVERT_TOPIC } from '../../src/shared/protocol.ts'
import { advertBody } from '../helpers/advert.ts'

// Node 20 has no global WebSocket, which the transport dials with (the relay listens with `ws`).
globalThis.WebSocket ??= NodeWebSocket as unknown as typeof WebSocket

const client = () =>
  createLibp2p({
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub({ globalSignaturePolicy: StrictNoSign, allowPublishToZeroTopicPeers: true }),
    },
  })
type Client = Awaited<ReturnType<typeof client>>

const body = (key: PrivateKey, seq: number) => advertBody(key, { seq, ts: seq })

describe('relay advert validation', () => {
  let relay: Relay
  let a: Client
  let b: Client
  const received: Uint8Array[] = []

  beforeAll(async () => {
    relay = await createRelay({ privateKey: await generateKeyPair('Ed25519') })
    a = await client()
    b = await client()
    for (const c of [a, b]) {
      c.services.pubsub.subscribe(ADVERT_TOPIC)
      await c.dial(multiaddr(relay.multiaddrs[0]!))
    }
    b.services.pubsub.addEventListener('message', (e) => {
      if (e.detail.topic === ADVERT_TOPIC) received.push(e.detail.data)
    })
    // The relay forwards to its mesh, which a heartbeat (1 s) fills; `a` must know the relay subscribes.
    await vi.waitFor(
      () => {
        const pubsub = (
          relay.node.services as { pubsub: GossipSub & { getMeshPeers(topic: string): string[] } }
        ).pubsub
        expect(pubsub.getMeshPeers(ADVERT_TOPIC)).toContain(b.peerId.toString())
        expect(a.services.pubsub.getSubscribers(ADVERT_TOPIC).map(String)).toContain(
          relay.node.peerId.toString(),
        )
      },
      { timeout: 15_000, interval: 100 },
    )
  }, 30_000)

  afterAll(async () => {
    await Promise.allSettled([a?.stop(), b?.stop()])
    await relay?.stop()
  })

  it('forwards valid adverts and drops altered, malformed and oversized ones', async () => {
    const key = await generateKeyPair('Ed25519')
    const first = await signAdvert(body(key, 1), key)
    const forged = (await signAdvert(body(key, 2), key)).slice()
    forged[forged.length - 1]! ^= 1 // the signature no longer holds
    const last = await signAdvert(body(key, 3), key)
    const garbage = Uint8Array.from([0xff, 0x00, 0x13])
    const oversized = new Uint8Array(MAX_ADVERT_BYTES + 1)
    for (const m of [first, forged, garbage, oversized, last]) {
      await a.services.pubsub.publish(ADVERT_TOPIC, m)
      await new Promise((r) => setTimeout(r, 100)) // in order, each its own message
    }
    await vi.waitFor(() => expect(received).toHaveLength(2), { timeout: 10_000, interval: 50 })
    await new Promise((r) => setTimeout(r, 300)) // nothing else arrives later
    expect(received.map((m) => Buffer.from(m).toString('hex'))).toEqual(
      [first, last].map((m) => Buffer.from(m).toString('hex')),
    )
  }, 30_000)
})
