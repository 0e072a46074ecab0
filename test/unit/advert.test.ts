/**
 * Adverts travel as unsigned gossipsub messages: the advert's own signature, by the PeerId it names,
 * is what authenticates it, so forged, altered and malformed adverts must all fail with typed errors.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  type AdvertBody,
  MAX_ADVERT_BYTES,
  MAX_ADVERT_SLOTS,
  openAdvert,
  signAdvert,
} from '../../src/net/advert.ts'
import { advertBody } from '../helpers/advert.ts'

const errorName = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: Error) => e.name,
  )

describe('adverts', () => {
  let key: Awaited<ReturnType<typeof generateKeyPair>>
  let other: Awaited<ReturnType<typeof generateKeyPair>>
  let body: AdvertBody

  beforeAll(async () => {
    key = await generateKeyPair('Ed25519')
    other = await generateKeyPair('Ed25519')
    const peer = peerIdFromPrivateKey(key).toString()
    body = advertBody(key, {
      seq: 1,
      ts: 1,
      addrs: [`/ip4/127.0.0.1/tcp/1/ws/p2p-circuit/webrtc/p2p/${peer}`],
    })
  })

  it('opens an advert signed by the peer it names, with or without a sender to match', async () => {
    const bytes = await signAdvert(body, key)
    expect((await openAdvert(bytes)).body).toEqual(body)
    expect((await openAdvert(bytes, body.peer)).body.seq).toBe(1)
    expect(await errorName(openAdvert(bytes, peerIdFromPrivateKey(other).toString()))).toBe(
      'MalformedFrameError',
    )
  })

  it('refuses an altered advert, and one signed by another key than the PeerId it names', async () => {
    const { sig } = dagCbor.decode(await signAdvert(body, key)) as { sig: Uint8Array }
    const altered = dagCbor.encode({ body: { ...body, slots: 0 }, sig })
    expect(await errorName(openAdvert(altered))).toBe('InvalidSignatureError')
    const forged = await signAdvert(body, other) // names `key`'s peer, signed by `other`
    expect(await errorName(openAdvert(forged))).toBe('InvalidSignatureError')
  })

  it('refuses malformed adverts with typed errors', async () => {
    const cases = [
      new Uint8Array(MAX_ADVERT_BYTES + 1),
      Uint8Array.of(0xff, 0x00),
      dagCbor.encode({ body: { ...body, slots: -1 }, sig: new Uint8Array(64) }),
      // Claims past any real peer: more free slots than slots, or than MAX_ADVERT_SLOTS.
      dagCbor.encode({ body: { ...body, slots: 2, maxSlots: 1 }, sig: new Uint8Array(64) }),
      dagCbor.encode({
        body: { ...body, slots: 1, maxSlots: MAX_ADVERT_SLOTS + 1 },
        sig: new Uint8Array(64),
      }),
      dagCbor.encode({ body: { ...body, threads: 1e6 }, sig: new Uint8Array(64) }),
      dagCbor.encode({ body: { ...body, peer: 'not-a-peer-id' }, sig: new Uint8Array(64) }),
      dagCbor.encode({ body, sig: 'x' }),
      dagCbor.encode([1, 2]),
    ]
    for (const c of cases.slice(0, 6)) expect(await errorName(openAdvert(c))).toBe('MalformedFrameError')
    for (const c of cases.slice(6))
      expect(await errorName(openAdvert(c))).toMatch(/^(MalformedFrameError|InvalidSignatureError)$/)
    // A valid signature does not make an out-of-bounds claim acceptable.
    const inflated = { ...body, slots: 100, maxSlots: 100 }
    expect(await errorName(openAdvert(await signAdvert(inflated, key)))).toBe('MalformedFrameError')
  })
})
