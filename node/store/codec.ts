/**
 * Record values on disk: dag-cbor, so bytes round-trip exactly. What dag-cbor cannot keep as it is
 * (NaN, a Float32Array, a Date…) is refused with a DataCloneError, as IndexedDB refuses what it
 * cannot clone, rather than stored changed; an object property set to `undefined` is left out.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'

export const encodeValue = (value: unknown): Uint8Array => dagCbor.encode(prepare(value, new Set()))

/** Byte strings come back as plain Uint8Arrays with buffers of their own (dag-cbor copies them). */
export const decodeValue = <T>(bytes: Uint8Array): T => dagCbor.decode(bytes) as T

const refuse = (what: string) => new DOMException(`${what} cannot be stored`, 'DataCloneError')

function prepare(v: unknown, parents: Set<object>): unknown {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return v
    case 'number':
      if (!Number.isFinite(v)) throw refuse(String(v))
      return v
    case 'object':
      break
    default:
      throw refuse(`a ${typeof v}`) // undefined at the top or in an array, bigint, function, symbol
  }
  if (v === null || v instanceof Uint8Array || CID.asCID(v)) return v
  if (parents.has(v)) throw refuse('a cyclic value')
  const proto = Object.getPrototypeOf(v)
  parents.add(v)
  try {
    if (Array.isArray(v)) return v.map((x) => prepare(x, parents))
    if (proto !== Object.prototype && proto !== null)
      throw refuse(`a ${v.constructor?.name ?? 'class'} object`)
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = prepare(x, parents)
    return out
  } finally {
    parents.delete(v)
  }
}
