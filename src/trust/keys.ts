/** Ed25519 identity helpers: every signer in peer-compute is an Ed25519 libp2p identity. */
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { Ed25519PrivateKey, Ed25519PublicKey, PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { InvalidSignatureError } from '../shared/errors.ts'
import { type Jwk, nodeCrypto } from '../shared/node-crypto.ts'

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
 * Keys imported once, each as a signer or verifier: @libp2p/crypto imports the key again on every
 * sign and verify. Where the host has node:crypto, its synchronous Ed25519 (WebCrypto there goes
 * through a thread pool, several times slower); else WebCrypto; where that lacks Ed25519, the
 * libp2p key. The same bytes each way: Ed25519 is deterministic.
 */
type Signer = (data: Uint8Array) => Promise<Uint8Array>
type Verifier = (data: Uint8Array, sig: Uint8Array) => Promise<boolean>
const ED25519 = { name: 'Ed25519' }
let signers = new WeakMap<PrivateKey, Signer>()
const verifiers = new Map<string, Verifier>()
const MAX_VERIFIERS = 1024
const b64url = (b: Uint8Array) =>
  btoa(String.fromCharCode(...b))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '')

let native = nodeCrypto()

/** Tests: WebCrypto only (false), or node:crypto again where the host has it (true); whether it is in use. */
export function useNativeEd25519(on: boolean): boolean {
  native = on ? nodeCrypto() : undefined
  signers = new WeakMap()
  verifiers.clear()
  return typeof native?.sign === 'function'
}

/** node:crypto's signer for this key, if the host has one that signs Ed25519 (tried once here). */
function nativeSigner(jwk: Jwk): Signer | undefined {
  const n = native
  if (!n?.sign || !n.createPrivateKey) return undefined
  try {
    const k = n.createPrivateKey({ key: jwk, format: 'jwk' })
    n.sign(null, new Uint8Array(0), k)
    return async (data) => new Uint8Array(n.sign!(null, data, k))
  } catch {
    return undefined // a host whose node:crypto lacks Ed25519 JWKs: WebCrypto instead
  }
}

function nativeVerifier(x: string): Verifier | undefined {
  const n = native
  if (!n?.verify || !n.createPublicKey) return undefined
  try {
    const k = n.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' })
    return async (data, sig) => n.verify!(null, data, k, sig)
  } catch {
    return undefined
  }
}

type Key = Awaited<ReturnType<typeof crypto.subtle.importKey>> // CryptoKey in DOM and in Node

/** A WebCrypto key, or undefined where there is none (no Ed25519, or no crypto.subtle at all). */
function subtleKey(key: { jwk: Jwk } | { raw: Uint8Array<ArrayBuffer> }, use: 'sign' | 'verify') {
  try {
    const k =
      'jwk' in key
        ? crypto.subtle.importKey('jwk', key.jwk, ED25519, false, [use])
        : crypto.subtle.importKey('raw', key.raw, ED25519, false, [use])
    return k.catch(unsupported) as Promise<Key | undefined>
  } catch {
    return Promise.resolve(undefined)
  }
}

function signerOf(key: PrivateKey): Signer {
  let s = signers.get(key)
  if (s) return s
  const raw = key.raw // Ed25519: 32 bytes of seed, then the 32-byte public key
  const jwk = { kty: 'OKP', crv: 'Ed25519', d: b64url(raw.subarray(0, 32)), x: b64url(raw.subarray(32)) }
  s = nativeSigner(jwk)
  if (!s) {
    const k = subtleKey({ jwk }, 'sign')
    s = async (data) => {
      const got = await k
      return new Uint8Array(got ? await crypto.subtle.sign(ED25519, got, own(data)) : await key.sign(data))
    }
  }
  signers.set(key, s)
  return s
}

function verifierOf(peerId: string): Verifier {
  let v = verifiers.get(peerId)
  if (v) return v
  const key = publicKeyOfPeerId(peerId) // throws for anything but an Ed25519 peer id: not kept
  v = nativeVerifier(b64url(key.raw))
  if (!v) {
    const got = subtleKey({ raw: new Uint8Array(key.raw) }, 'verify')
    v = async (data, sig) => {
      const wk = await got
      return wk ? crypto.subtle.verify(ED25519, wk, own(sig), own(data)) : key.verify(data, sig)
    }
  }
  if (verifiers.size >= MAX_VERIFIERS) verifiers.delete(verifiers.keys().next().value!)
  verifiers.set(peerId, v)
  return v
}

const unsupported = () => undefined
/** WebCrypto refuses views of a SharedArrayBuffer (possible in a cross-origin-isolated page): copy those. */
const own = (b: Uint8Array) => (b.buffer instanceof ArrayBuffer ? b : b.slice()) as Uint8Array<ArrayBuffer>

/** Signs `data` with an Ed25519 identity. */
export async function sign(key: PrivateKey, data: Uint8Array): Promise<Uint8Array> {
  if (key.type !== 'Ed25519') return new Uint8Array(await key.sign(data))
  return signerOf(key)(data)
}

/** Checks `sig` over `data` against the key in `peerId`; throws InvalidSignatureError otherwise. */
export async function verifyByPeerId(peerId: string, data: Uint8Array, sig: Uint8Array): Promise<void> {
  const verify = verifierOf(peerId)
  if (!(sig instanceof Uint8Array) || sig.byteLength !== ED25519_SIG_BYTES) {
    throw new InvalidSignatureError(`signature must be ${ED25519_SIG_BYTES} bytes`)
  }
  let ok = false
  try {
    ok = await verify(data, sig)
  } catch {
    ok = false
  }
  if (!ok) throw new InvalidSignatureError(`signature does not match peer ${peerId}`)
}
