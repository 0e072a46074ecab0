/**
 * When a peer's own advert goes out (src/net/discovery-publish.ts): what it offers at once, free
 * slots after none within SLOT_ADVERT_GAP_MS, any other free-slot change within SLOT_CHANGE_GAP_MS.
 */

import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { AdvertBody, Capabilities } from '../../src/net/advert.ts'
import {
  createAdvertPublisher,
  SLOT_ADVERT_GAP_MS,
  SLOT_CHANGE_GAP_MS,
} from '../../src/net/discovery-publish.ts'
import type { BrowserNode } from '../../src/net/node.ts'
import { peerIdOf } from '../../src/trust/keys.ts'
import { testCapabilities } from '../helpers/advert.ts'

const key = await generateKeyPair('Ed25519')
const self = peerIdOf(key)
const ADDR = `/ip4/10.0.0.1/tcp/1/ws/p2p/${self}/p2p-circuit/webrtc/p2p/${self}`

function setup() {
  const sent: { at: number; slots: number }[] = []
  const node = {
    peerId: { toString: () => self },
    getMultiaddrs: () => [multiaddr(ADDR)],
    services: {
      pubsub: {
        async publish(_topic: string, data: Uint8Array) {
          const { body } = dagCbor.decode(data) as { body: AdvertBody }
          sent.push({ at: Date.now(), slots: body.slots })
        },
      },
    },
  } as unknown as BrowserNode
  const caps: Capabilities = testCapabilities({ slots: 2, maxSlots: 2 })
  const log = Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false })
  const pub = createAdvertPublisher({
    node,
    privateKey: key,
    capabilities: () => ({ ...caps }),
    log,
  } as never)
  /** Sets the free slots, tells the publisher, and lets `ms` pass. */
  const slots = async (n: number, ms = 0) => {
    caps.slots = n
    pub.capabilitiesChanged()
    await pass(ms)
  }
  return { pub, sent, slots, caps }
}

/** `ms` of fake time, then 50 ms of real time (not faked) for an advert's signature to finish. */
async function pass(ms: number) {
  await vi.advanceTimersByTimeAsync(ms)
  for (const end = performance.now() + 50; performance.now() < end; )
    await new Promise((r) => setImmediate(r))
}
const fake = () => vi.useFakeTimers({ now: 1_000_000, toFake: ['setTimeout', 'clearTimeout', 'Date'] })

describe('advert publishing', () => {
  afterEach(() => vi.useRealTimers())

  it('publishes free slots after none within the short gap, fewer free slots only within the long one', async () => {
    fake()
    const { pub, sent, slots } = setup()
    await pub.publish()
    expect(sent.map((s) => s.slots)).toEqual([2])
    const t0 = Date.now()
    await slots(1, 100)
    await slots(0, SLOT_CHANGE_GAP_MS) // 2 → 1 → 0: one advert, the long gap after the last
    expect(sent.map((s) => s.slots)).toEqual([2, 0])
    expect(sent[1]!.at - t0).toBeGreaterThanOrEqual(SLOT_CHANGE_GAP_MS)
    const t1 = Date.now()
    await slots(1, SLOT_ADVERT_GAP_MS + 50) // capacity after none: soon
    expect(sent.map((s) => s.slots)).toEqual([2, 0, 1])
    expect(sent[2]!.at - t1).toBeLessThanOrEqual(SLOT_ADVERT_GAP_MS + 50)
    await slots(2, SLOT_ADVERT_GAP_MS + 50) // one more free: waits for the long gap
    expect(sent).toHaveLength(3)
    await pass(SLOT_CHANGE_GAP_MS)
    expect(sent.map((s) => s.slots)).toEqual([2, 0, 1, 2])
    pub.stop()
  })

  it('drops a pending free-slot advert when the count comes back, but not an announce', async () => {
    fake()
    const { pub, sent, slots } = setup()
    await pub.publish()
    pub.announce(3000) // a re-announce, due in 3 s…
    await slots(1, 100)
    await slots(2, 3000) // …goes out though the count came back
    expect(sent.map((s) => s.slots)).toEqual([2, 2])
    await slots(1, 100)
    await slots(2, 2 * SLOT_CHANGE_GAP_MS) // 2 → 1 → 2 with nothing else pending: nothing to tell
    expect(sent.map((s) => s.slots)).toEqual([2, 2])
    pub.stop()
  })

  it('publishes what it offers at once, whatever the slot gap', async () => {
    fake()
    const { pub, sent, slots, caps } = setup()
    await pub.publish()
    await slots(1, 100) // a long-gap change pending…
    caps.models = ['bafkreidyllbzbuwb2fdgttvsc6notidx5yr5wgl6z2qhcptapjy3pkxbja']
    pub.capabilitiesChanged() // …and a model cached: out within 50 ms
    await pass(60)
    expect(sent.map((s) => s.slots)).toEqual([2, 1])
    pub.stop()
  })
})
