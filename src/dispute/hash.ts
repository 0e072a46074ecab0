/** SHA-256 through WebCrypto (page, worker and Node alike), over length-framed, tagged parts. */

export type Part = Uint8Array | string | number

const encoder = new TextEncoder()

export async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>))
}

/**
 * Parts joined so that no two lists of parts give the same bytes: each is a kind byte, then a
 * number as a little-endian float64, or bytes and text after their length.
 */
export function framed(parts: readonly Part[]): Uint8Array {
  const encoded = parts.map((p) => (typeof p === 'string' ? encoder.encode(p) : p))
  const size = encoded.reduce<number>((n, p) => n + 1 + (typeof p === 'number' ? 8 : 4 + p.byteLength), 0)
  const out = new Uint8Array(size)
  const view = new DataView(out.buffer)
  let at = 0
  encoded.forEach((p, i) => {
    if (typeof p === 'number') {
      out[at] = 0
      view.setFloat64(at + 1, p, true)
      at += 9
      return
    }
    out[at] = typeof parts[i] === 'string' ? 1 : 2
    view.setUint32(at + 1, p.byteLength, true)
    out.set(p, at + 5)
    at += 5 + p.byteLength
  })
  return out
}

/** SHA-256 of `parts` framed after a tag that names what is hashed (domain separation). */
export const digest = (tag: string, ...parts: Part[]): Promise<Uint8Array> => sha256(framed([tag, ...parts]))

export const HASH_BYTES = 32
