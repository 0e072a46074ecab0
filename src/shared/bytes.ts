/** Byte helpers used in every context (page, workers, relay, scripts). */

/** One array holding `parts` in order; no copy when there is exactly one part. */
export function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let off = 0
  for (const p of parts) {
    out.set(p, off)
    off += p.byteLength
  }
  return out
}

/**
 * `bytes` alone in a buffer of its own size. Structured clone (IndexedDB, postMessage) copies a
 * view's whole buffer: a 400-byte dag-cbor encoding can sit in an 8 KiB one.
 */
export function own(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : copyOf(bytes)
}

/** A copy in a buffer of its own. Not `slice()`: a Node Buffer's slice is a view of the same memory. */
export function copyOf<T extends Uint8Array | Int8Array | Int32Array | Float32Array | BigInt64Array>(
  view: T,
): T {
  // Any Uint8Array (a Buffer included) becomes a plain Uint8Array; other views keep their type.
  const Ctor = (view instanceof Uint8Array ? Uint8Array : view.constructor) as new (n: number) => T
  const out = new Ctor(view.length)
  out.set(view as never)
  return out
}
