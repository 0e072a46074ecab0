/**
 * Tabs come and go, many from one address (a home's NAT, the proxy in front of the relay): adverts
 * still reach a newcomer. gossipsub's default scoring counted every peer seen from an IP in the last
 * hour and, past 10, kept them all out of the relay's mesh and gossip (found in the NAT lab).
 */
import '../../node/relay/polyfill.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { GossipSub } from '@libp2p/gossipsub'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, expect, it, vi } from 'vitest'
import { createRelay, type Relay } from '../../node/relay/relay.ts'
import { signAdvert } from '../../src/net/advert.ts'
import { ADVERT_TOPIC } from '../../src/shared/protocol.ts'
import { advertBody } from '../helpers/advert.ts'
import { relayClient } from '../helpers/relay-client.ts'

const client = async (relay: Relay) => {
  const c = await relayClient()
  c.services.pubsub.subscribe(ADVERT_TOPIC)
  await c.dial(multiaddr(relay.multiaddrs[0]!))
  return c
}

let relay: Relay
afterAll(() => relay?.stop())

it('a newcomer gets adverts after 14 peers from the same IP have come and gone', async () => {
  relay = await createRelay({
    privateKey: await generateKeyPair('Ed25519'),
    listen: ['/ip4/127.0.0.1/tcp/0/ws'],
  })
  for (let i = 0; i < 14; i++) {
    const gone = await client(relay).catch((e) => {
      throw new Error(`client ${i}: ${e.message}`)
    })
    await vi.waitFor(() =>
      expect((relay.node.services.pubsub as GossipSub).getSubscribers(ADVERT_TOPIC)).toHaveLength(1),
    )
    await gone.stop()
    await vi.waitFor(() => expect(relay.node.getConnections()).toHaveLength(0))
    await new Promise((ok) => setTimeout(ok, 250)) // libp2p accepts 5 connections a second per host
  }
  const [a, b] = [await client(relay), await client(relay)]
  try {
    let got = 0
    b.services.pubsub.addEventListener('message', () => got++)
    const key = await generateKeyPair('Ed25519')
    let seq = 0
    await vi.waitFor(
      async () => {
        seq++ // fresh bytes each time: gossipsub drops a repeat
        await a.services.pubsub.publish(
          ADVERT_TOPIC,
          await signAdvert(advertBody(key, { seq, ts: seq }), key),
        )
        expect(got).toBeGreaterThan(0)
      },
      { timeout: 10_000, interval: 500 },
    )
  } finally {
    await Promise.allSettled([a.stop(), b.stop()])
  }
}, 60_000)
