/** A well-formed advert body for tests: one WASM slot, contributing, naming `key`'s PeerId. */
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { AdvertBody, Capabilities } from '../../src/net/advert.ts'

/** What a contributing peer with one WASM slot offers, changed by `over`. */
export const testCapabilities = (over: Partial<Capabilities> = {}): Capabilities => ({
  eps: ['wasm'],
  adapter: 'none',
  threads: 1,
  slots: 1,
  maxSlots: 1,
  contributing: true,
  models: [],
  benchUs: 0,
  version: '0.1.0',
  ort: '1.0.0',
  ...over,
})

export function advertBody(key: PrivateKey, o: { seq: number; ts: number; addrs?: string[] }): AdvertBody {
  const peer = peerIdFromPrivateKey(key).toString()
  return {
    ...testCapabilities(),
    v: 1,
    peer,
    addrs: o.addrs ?? [],
    seq: o.seq,
    ts: o.ts,
  }
}
