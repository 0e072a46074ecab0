/**
 * The host's `node:crypto` where it has one (Node, Deno, Bun), found through
 * `process.getBuiltinModule` so that nothing is imported: tabs and workers load the files that ask
 * for it as they are, and use WebCrypto instead.
 */

/** The few synchronous functions peer-compute uses, each optional. */
export interface NodeCrypto {
  hash?: (algorithm: string, data: Uint8Array, encoding: 'buffer') => Uint8Array
  createHash?: (algorithm: string) => { update(data: Uint8Array): { digest(): Uint8Array } }
  sign?: (algorithm: null, data: Uint8Array, key: NodeKey) => Uint8Array
  verify?: (algorithm: null, data: Uint8Array, key: NodeKey, signature: Uint8Array) => boolean
  createPrivateKey?: (o: { key: Jwk; format: 'jwk' }) => NodeKey
  createPublicKey?: (o: { key: Jwk; format: 'jwk' }) => NodeKey
}

/** A JSON Web Key: what both Node and WebCrypto import. */
export type Jwk = Record<string, string>

/** A node:crypto KeyObject, opaque here. */
export type NodeKey = { readonly type: string }

export function nodeCrypto(): NodeCrypto | undefined {
  const host = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process
  try {
    return host?.getBuiltinModule?.('node:crypto') as NodeCrypto | undefined
  } catch {
    return undefined
  }
}
