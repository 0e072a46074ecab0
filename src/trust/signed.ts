/** Domain-separated Ed25519 signatures over canonical dag-cbor, verifiable from the PeerId alone. */
import * as dagCbor from '@ipld/dag-cbor'
import type { PrivateKey } from '@libp2p/interface'
import { sign, verifyByPeerId } from './keys.ts'

export function signingBytes(domain: string, body: unknown): Uint8Array {
  return dagCbor.encode({ domain, body })
}

export async function signRecord(domain: string, body: unknown, key: PrivateKey): Promise<Uint8Array> {
  return sign(key, signingBytes(domain, body))
}

/** Throws InvalidSignatureError unless `sig` is `signer`'s signature of (domain, body). */
export function verifyRecord(domain: string, body: unknown, sig: Uint8Array, signer: string): Promise<void> {
  return verifyByPeerId(signer, signingBytes(domain, body), sig)
}
