/** The relay's advert store and a newcomer's bounded read of its snapshot (in-memory libp2p streams). */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, Stream } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { streamPair } from '@libp2p/utils'
import { afterEach, describe, expect, it } from 'vitest'
import { createAdvertStore, MAX_SNAPSHOT_BYTES } from '../../node/relay/advert-store.ts'
import { MAX_ADVERT_BYTES, openAdvert, signAdvert } from '../../src/net/advert.ts'
import { fetchAdvertSnapshot, MAX_SNAPSHOT_ADVERTS } from '../../src/net/advert-snapshot.ts'
import { encodeFrame, sendEncoded } from '../../src/net/frame.ts'
import { ADVERTS_PROTOCOL } from '../../src/shared/protocol.ts'
import { advertBody } from '../helpers/advert.ts'

const bytes = (n: number, fill = 1) => new Uint8Array(n).fill(fill)

describe('the relay advert store', () => {
  it('keeps the newest advert per peer, by ts then seq', () => {
    const s = createAdvertStore()
    s.put('a', bytes(1, 1), [10, 1])
    s.put('a', bytes(1, 2), [10, 3])
    s.put('a', bytes(1, 3), [10, 2]) // older seq: ignored
    s.put('a', bytes(1, 4), [9, 9]) // older ts, a replay from an earlier session: ignored
    expect(s.snapshot()).toEqual([bytes(1, 2)])
    expect(s.size).toBe(1)
  })

  it('serves the newest first, drops what is stale, and forgets the stalest peer when full', () => {
    let t = 0
    const s = createAdvertStore({ maxPeers: 2, ttlMs: 100, now: () => t })
    s.put('a', bytes(1, 1), [1, 1])
    t = 50
    s.put('b', bytes(1, 2), [1, 1])
    expect(s.snapshot()).toEqual([bytes(1, 2), bytes(1, 1)])
    t = 120 // a's advert is older than the ttl
    expect(s.snapshot()).toEqual([bytes(1, 2)])
    s.put('c', bytes(1, 3), [1, 1]) // a third peer: a, the stalest, goes
    expect(s.size).toBe(2)
    expect(s.snapshot()).toEqual([bytes(1, 3), bytes(1, 2)])
  })

  it('keeps a copy, not a view of the whole message; bounds its bytes; forgets stale adverts', () => {
    let t = 0
    const s = createAdvertStore({ maxBytes: 300, ttlMs: 100, now: () => t })
    const message = new Uint8Array(4 * 1024 * 1024).fill(7)
    s.put('a', message.subarray(10, 110), [1, 1])
    const [kept] = s.snapshot()
    expect(kept!.buffer.byteLength).toBe(100) // not the 4 MiB message it came in
    message.fill(0)
    expect(s.snapshot()[0]).toEqual(bytes(100, 7))
    s.put('b', bytes(100), [1, 1])
    s.put('c', bytes(150), [1, 1]) // 350 > 300 bytes: a, the stalest, goes
    expect(s.size).toBe(2)
    t = 150
    s.put('d', bytes(10), [1, 1]) // b and c are past the ttl: forgotten
    expect(s.size).toBe(1)
  })

  it("takes a peer's advert with an older clock once the one held is stale", () => {
    let t = 0
    const s = createAdvertStore({ ttlMs: 100, now: () => t })
    s.put('a', bytes(1, 1), [5000, 3])
    s.put('a', bytes(1, 2), [4000, 1]) // its clock stepped back: refused while the held one is fresh
    expect(s.snapshot()).toEqual([bytes(1, 1)])
    t = 101
    s.put('a', bytes(1, 2), [4000, 1])
    expect(s.snapshot()).toEqual([bytes(1, 2)])
  })

  it('caps a snapshot at MAX_SNAPSHOT_BYTES', () => {
    const s = createAdvertStore({ maxBytes: 2 * MAX_SNAPSHOT_BYTES })
    const n = Math.ceil(MAX_SNAPSHOT_BYTES / MAX_ADVERT_BYTES) + 10
    for (let i = 0; i < n; i++) s.put(`p${i}`, bytes(MAX_ADVERT_BYTES), [1, 1])
    const snap = s.snapshot()
    expect(snap.length).toBeLessThan(n)
    expect(snap.reduce((a, b) => a + b.byteLength, 0)).toBeLessThanOrEqual(MAX_SNAPSHOT_BYTES)
  })
})

describe('fetchAdvertSnapshot', () => {
  const open: Stream[] = []
  afterEach(async () => {
    for (const s of open.splice(0)) s.abort(new Error('test over'))
  })
  /** A connection whose far side answers with `frame` bytes (or nothing). */
  const relay = (answer: (s: Stream) => Promise<void>): Connection =>
    ({
      newStream: async () => {
        const [client, server] = await streamPair({ protocol: ADVERTS_PROTOCOL })
        open.push(client, server)
        void answer(server).catch(() => {})
        return client
      },
    }) as unknown as Connection
  const send = (frame: Record<string, unknown> & { t: string }) => async (s: Stream) => {
    await sendEncoded(s, encodeFrame(frame), { closed: () => new Error('closed') })
    await s.close()
  }

  it('reads real signed adverts that open, as a newcomer does', async () => {
    const key = await generateKeyPair('Ed25519')
    const peer = peerIdFromPrivateKey(key).toString()
    const body = advertBody(key, { seq: 1, ts: Date.now() })
    const signed = await signAdvert(body, key)
    const store = createAdvertStore()
    store.put(peer, signed, [1, 1])
    const got = await fetchAdvertSnapshot(
      relay(send({ t: 'adverts', adverts: store.snapshot() })),
      AbortSignal.timeout(2000),
    )
    expect(got).toHaveLength(1)
    expect((await openAdvert(got[0]!)).body.peer).toBe(peer)
  })

  it('skips entries that are not adverts, and refuses what is not a snapshot', async () => {
    const sig = AbortSignal.timeout(2000)
    const mixed = await fetchAdvertSnapshot(
      relay(send({ t: 'adverts', adverts: [bytes(3), 'text', 7, bytes(MAX_ADVERT_BYTES + 1)] })),
      sig,
    )
    expect(mixed).toEqual([bytes(3)])
    for (const frame of [
      { t: 'adverts', adverts: 'no' },
      { t: 'other', adverts: [] },
      { t: 'adverts', adverts: Array.from({ length: MAX_SNAPSHOT_ADVERTS + 1 }, () => 0) },
    ]) {
      await expect(fetchAdvertSnapshot(relay(send(frame)), sig)).rejects.toMatchObject({
        name: 'MalformedFrameError',
      })
    }
  })

  it('gives up on a relay that never answers, at the signal', async () => {
    const t0 = Date.now()
    await expect(
      fetchAdvertSnapshot(
        relay(async () => {}),
        AbortSignal.timeout(200),
      ),
    ).rejects.toThrow()
    expect(Date.now() - t0).toBeLessThan(2000)
  })
})
