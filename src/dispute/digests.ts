/**
 * SHA-256 for commitments, whose cost is tens of thousands of 4–8 KiB digests: the host's native,
 * synchronous hash where it has one (src/shared/node-crypto.ts), else WebCrypto with a batch of
 * digests in flight (in Chromium 4–10× faster than a hash in JS). The same bytes either way.
 */
import { nodeCrypto } from '../shared/node-crypto.ts'
import { framed, type Part, sha256 } from './hash.ts'

type Native = (bytes: Uint8Array) => Uint8Array

/** A plain Uint8Array over its own 32 bytes: Node's digest re-wrapped, copied only if it is a view of a pool. */
const own = (d: Uint8Array): Uint8Array =>
  d.byteOffset === 0 && d.buffer.byteLength === d.byteLength
    ? new Uint8Array(d.buffer, 0, d.byteLength)
    : new Uint8Array(d)

function nativeSha256(): Native | undefined {
  const c = nodeCrypto()
  if (typeof c?.hash === 'function') return (b) => own(c.hash!('sha256', b, 'buffer'))
  if (typeof c?.createHash === 'function') return (b) => own(c.createHash!('sha256').update(b).digest())
  return undefined
}

let native = nativeSha256()

/** Tests: WebCrypto only (false), or the host's native hash again where it has one (true); whether native is in use. */
export function useNativeSha256(on: boolean): boolean {
  native = on ? nativeSha256() : undefined
  return native !== undefined
}

/** SHA-256 of `bytes`, computed at once where the host hashes natively. */
export const sha256Of = async (bytes: Uint8Array): Promise<Uint8Array> =>
  native ? native(bytes) : sha256(bytes)

/** hash.ts's `digest` (the same bytes) over a list of parts: no spread, however many chunk hashes. */
export const digestOf = (tag: string, parts: readonly Part[]): Promise<Uint8Array> =>
  sha256Of(framed([tag, ...parts]))

/** Runs a batch holds: what `fill` makes at once, and what is in flight through WebCrypto. */
export const RUN_BATCH = 64

/** Native hashing never waits, so it hands the thread to timers and I/O (links) this often. */
const YIELD_MS = 20
let lastYield = 0
const host = globalThis as { setImmediate?: (f: () => void) => unknown }
const nextTask = (): Promise<void> =>
  new Promise((resolve) => (host.setImmediate ? host.setImmediate(resolve) : setTimeout(resolve, 0)))

/**
 * SHA-256 of `count` runs in each stream, stream s's runs `runBytes[s]` bytes each (the last may be
 * shorter): `fill(from, to)` returns every stream's runs [from, to) (at most RUN_BATCH) back to back,
 * or as a list of runs of any sizes. `fill` may reuse its buffers: each batch is hashed before the
 * next is asked for.
 */
export async function runDigests(
  count: number,
  runBytes: readonly number[],
  fill: (from: number, to: number) => readonly (Uint8Array | readonly Uint8Array[])[],
): Promise<Uint8Array[][]> {
  const out = runBytes.map(() => new Array<Uint8Array>(count))
  for (let from = 0; from < count; from += RUN_BATCH) {
    const to = Math.min(count, from + RUN_BATCH)
    const hash = native
    const pending: Promise<void>[] = []
    fill(from, to).forEach((bytes, s) => {
      const [into, size] = [out[s]!, runBytes[s]!]
      for (let i = from; i < to; i++) {
        const run = Array.isArray(bytes)
          ? bytes[i - from]!
          : (bytes as Uint8Array).subarray((i - from) * size, (i - from + 1) * size)
        if (hash) into[i] = hash(run)
        else
          pending.push(
            sha256(run).then((h) => {
              into[i] = h
            }),
          )
      }
    })
    if (pending.length) await Promise.all(pending)
    else if (performance.now() - lastYield > YIELD_MS) {
      await nextTask()
      lastYield = performance.now()
    }
  }
  return out
}
