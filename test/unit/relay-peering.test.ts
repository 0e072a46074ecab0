/**
 * Peered relays carry adverts across: Node peers over real WebSockets on 127.0.0.1, A on relay R1
 * only, B on R2 only; R1 is started with `peers: [R2]`. R2 restarts; R1 redials it and adverts
 * flow again. And a peer over the advert rate: the excess is dropped, its newest advert still lands.
 */
import '../../node/relay/polyfill.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { createRelay, type Relay } from '../../node/relay/relay.ts'
import { openAdvert, signAdvert } from '../../src/net/advert.ts'
import { ADVERT_TOPIC } from '../../src/shared/protocol.ts'
import { advertBody } from '../helpers/advert.ts'
import { relayClient } from '../helpers/relay-client.ts'

const client = () => relayClient()
type Client = Awaited<ReturnType<typeof client>>

describe('relay peering', () => {
  let r1: Relay
  let r2: Relay
  let a: Client
  let b: Client
  const r2Key = generateKeyPair('Ed25519')
  const seen: { peer: string; seq: number }[] = []
  let port2 = 0

  const startR2 = async () => {
    r2 = await createRelay({
      privateKey: await r2Key,
      listen: [`/ip4/127.0.0.1/tcp/${port2}/ws`],
      advertRate: 60,
    })
    port2 = Number(r2.multiaddrs[0]!.split('/tcp/')[1]!.split('/')[0])
    return r2
  }
  afterAll(async () => {
    await Promise.allSettled([a?.stop(), b?.stop()])
    await Promise.allSettled([r1?.stop(), r2?.stop()])
  })

  /** Publishes from A until B has seen `seq` from `key` (a mesh forms within a heartbeat or two). */
  const crosses = async (key: PrivateKey, seq: number) => {
    let attempt = 0
    await vi.waitFor(
      async () => {
        if (!seen.some((s) => s.seq === seq)) {
          // Fresh bytes each time: gossipsub drops a repeat of a message it has seen.
          const data = await signAdvert(advertBody(key, { seq, ts: seq * 1000 + attempt++ }), key)
          await a.services.pubsub.publish(ADVERT_TOPIC, data).catch(() => {})
        }
        expect(seen.map((s) => s.seq)).toContain(seq)
      },
      { timeout: 15_000, interval: 500 },
    )
  }

  it('an advert published on R1 reaches a peer on R2', async () => {
    await startR2()
    r1 = await createRelay({ privateKey: await generateKeyPair('Ed25519'), peers: r2.multiaddrs })
    a = await client()
    b = await client()
    b.services.pubsub.addEventListener('message', (e) => {
      if (e.detail.topic !== ADVERT_TOPIC) return
      void openAdvert(e.detail.data).then(({ body }) => seen.push({ peer: body.peer, seq: body.seq }))
    })
    for (const [c, r] of [
      [a, r1],
      [b, r2],
    ] as const) {
      c.services.pubsub.subscribe(ADVERT_TOPIC)
      await c.dial(multiaddr(r.multiaddrs[0]!))
    }
    expect(a.getConnections(r2.node.peerId)).toHaveLength(0) // only the relays link the two sides
    await crosses(await generateKeyPair('Ed25519'), 1)
  }, 30_000)

  it('R1 redials R2 after a restart, and adverts cross again', async () => {
    await r2.stop()
    await startR2()
    await b.dial(multiaddr(r2.multiaddrs[0]!))
    await vi.waitFor(() => expect(r1.node.getConnections(r2.node.peerId).length).toBeGreaterThan(0), {
      timeout: 10_000,
      interval: 100,
    })
    await crosses(await generateKeyPair('Ed25519'), 2)
  }, 30_000)

  it('R2 forwards at most its advert rate per peer, and the newest advert of a burst last', async () => {
    const key = await generateKeyPair('Ed25519')
    await crosses(key, 10) // the mesh is up; one token spent
    const from = (await openAdvert(await signAdvert(advertBody(key, { seq: 0, ts: 0 }), key))).body.peer
    for (let seq = 11; seq <= 30; seq++) {
      await a.services.pubsub.publish(
        ADVERT_TOPIC,
        await signAdvert(advertBody(key, { seq, ts: seq * 1000 }), key),
      )
    }
    // R2 allows 60 a minute, a burst of 10: 9 more at once, then only the newest (30), a second later.
    await vi.waitFor(() => expect(seen.filter((s) => s.peer === from).map((s) => s.seq)).toContain(30), {
      timeout: 15_000,
      interval: 100,
    })
    const got = seen.filter((s) => s.peer === from).map((s) => s.seq)
    // Which 9 of the burst take the tokens depends on the order their signature checks finish.
    expect(got).toHaveLength(11)
    expect(got[0]).toBe(10)
    expect(got.at(-1)).toBe(30)
    expect(new Set(got).size).toBe(11)
    expect(got.slice(1, -1).every((s) => s > 10 && s < 30)).toBe(true)
  }, 30_000)
})
