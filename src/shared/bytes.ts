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
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice()
}
