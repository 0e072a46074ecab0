/** Ed25519 identity helpers: every signer in peer-compute is an Ed25519 libp2p identity. */
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { Ed25519PrivateKey, Ed25519PublicKey, PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { InvalidSignatureError } from '../shared/errors.ts'

export const ED25519_SIG_BYTES = 64

export async function generateIdentity(): Promise<Ed25519PrivateKey> {
  return generateKeyPair('Ed25519')
}

/** Protobuf form, the same bytes libp2p uses for a persisted identity. */
export function privateKeyToBytes(key: PrivateKey): Uint8Array {
  return privateKeyToProtobuf(key)
}

export function privateKeyFromBytes(bytes: Uint8Array): Ed25519PrivateKey {
  const key = privateKeyFromProtobuf(bytes)
  if (key.type !== 'Ed25519') throw new InvalidSignatureError(`expected an Ed25519 key, got ${key.type}`)
  return key
}

export function peerIdOf(key: PrivateKey): string {
  return peerIdFromPrivateKey(key).toString()
}

/** The public key embedded in an Ed25519 peer id (identity multihash); other peer ids are refused. */
export function publicKeyOfPeerId(peerId: string): Ed25519PublicKey {
  let parsed: ReturnType<typeof peerIdFromString>
  try {
    parsed = peerIdFromString(peerId)
  } catch {
    throw new InvalidSignatureError(`not a peer id: ${String(peerId).slice(0, 64)}`)
  }
  if (parsed.type !== 'Ed25519' || parsed.publicKey == null) {
    throw new InvalidSignatureError(`peer id ${peerId} carries no Ed25519 public key`)
  }
  return parsed.publicKey
}

/** Checks `sig` over `data` against the key in `peerId`; throws InvalidSignatureError otherwise. */
export async function verifyByPeerId(peerId: string, data: Uint8Array, sig: Uint8Array): Promise<void> {
  const key = publicKeyOfPeerId(peerId)
  if (!(sig instanceof Uint8Array) || sig.byteLength !== ED25519_SIG_BYTES) {
    throw new InvalidSignatureError(`signature must be ${ED25519_SIG_BYTES} bytes`)
  }
  let ok = false
  try {
    ok = await key.verify(data, sig)
  } catch {
    ok = false
  }
  if (!ok) throw new InvalidSignatureError(`signature does not match peer ${peerId}`)
}
