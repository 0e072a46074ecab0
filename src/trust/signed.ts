/** Domain-separated Ed25519 signatures over canonical dag-cbor, verifiable from the PeerId alone. */
import * as dagCbor from '@ipld/dag-cbor'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { InvalidSignatureError } from '../shared/errors.ts'

export function signingBytes(domain: string, body: unknown): Uint8Array {
  return dagCbor.encode({ domain, body })
}

export async function signRecord(domain: string, body: unknown, key: PrivateKey): Promise<Uint8Array> {
  return key.sign(signingBytes(domain, body))
}

/** Throws InvalidSignatureError unless `sig` is `signer`'s signature of (domain, body). */
export async function verifyRecord(
  domain: string,
  body: unknown,
  sig: Uint8Array,
  signer: string,
): Promise<void> {
  let ok = false
  try {
    const key = peerIdFromString(signer).publicKey
    if (key == null) throw new InvalidSignatureError(`peer id ${signer} does not embed a public key`)
    ok = await key.verify(signingBytes(domain, body), sig)
  } catch (err) {
    if ((err as Error).name === InvalidSignatureError.NAME) throw err
    throw new InvalidSignatureError(`cannot verify signature of ${signer}: ${(err as Error).message}`)
  }
  if (!ok) throw new InvalidSignatureError(`bad ${domain} signature from ${signer}`)
}
