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

/**
 * WebCrypto keys, imported once: @libp2p/crypto imports the key again on every sign and verify (two
 * WebCrypto round trips instead of one). Where WebCrypto lacks Ed25519, the libp2p key is used.
 */
const ED25519 = { name: 'Ed25519' }
type Key = Awaited<ReturnType<typeof crypto.subtle.importKey>> // CryptoKey in DOM and in Node
const signKeys = new WeakMap<PrivateKey, Promise<Key | undefined>>()
const verifyKeys = new Map<string, Promise<Key | undefined>>()
const MAX_VERIFY_KEYS = 1024
const b64url = (b: Uint8Array) =>
  btoa(String.fromCharCode(...b))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '')
const unsupported = () => undefined

function signKey(key: PrivateKey): Promise<Key | undefined> {
  let k = signKeys.get(key)
  if (!k) {
    const raw = key.raw // Ed25519: 32 bytes of seed, then the 32-byte public key
    const jwk = { kty: 'OKP', crv: 'Ed25519', d: b64url(raw.subarray(0, 32)), x: b64url(raw.subarray(32)) }
    k = crypto.subtle.importKey('jwk', jwk, ED25519, false, ['sign']).catch(unsupported)
    signKeys.set(key, k)
  }
  return k
}

function verifyKey(peerId: string, key: Ed25519PublicKey): Promise<Key | undefined> {
  let k = verifyKeys.get(peerId)
  if (!k) {
    k = crypto.subtle.importKey('raw', new Uint8Array(key.raw), ED25519, false, ['verify']).catch(unsupported)
    if (verifyKeys.size >= MAX_VERIFY_KEYS) verifyKeys.delete(verifyKeys.keys().next().value!)
    verifyKeys.set(peerId, k)
  }
  return k
}

/** WebCrypto refuses views of a SharedArrayBuffer (possible in a cross-origin-isolated page): copy those. */
const own = (b: Uint8Array) => (b.buffer instanceof ArrayBuffer ? b : b.slice()) as Uint8Array<ArrayBuffer>

/** Signs `data` with an Ed25519 identity. */
export async function sign(key: PrivateKey, data: Uint8Array): Promise<Uint8Array> {
  const k = key.type === 'Ed25519' ? await signKey(key) : undefined
  if (!k) return new Uint8Array(await key.sign(data))
  return new Uint8Array(await crypto.subtle.sign(ED25519, k, own(data)))
}

/** Checks `sig` over `data` against the key in `peerId`; throws InvalidSignatureError otherwise. */
export async function verifyByPeerId(peerId: string, data: Uint8Array, sig: Uint8Array): Promise<void> {
  const key = publicKeyOfPeerId(peerId)
  if (!(sig instanceof Uint8Array) || sig.byteLength !== ED25519_SIG_BYTES) {
    throw new InvalidSignatureError(`signature must be ${ED25519_SIG_BYTES} bytes`)
  }
  let ok = false
  try {
    const k = await verifyKey(peerId, key)
    ok = k ? await crypto.subtle.verify(ED25519, k, own(sig), own(data)) : await key.verify(data, sig)
  } catch {
    ok = false
  }
  if (!ok) throw new InvalidSignatureError(`signature does not match peer ${peerId}`)
}
