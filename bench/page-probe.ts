/**
 * Bench page, probes: counts what a job really does in a tab without touching src/jobs: IndexedDB
 * writes (per store, bytes, ms until success), SHA-256 digests, WebCrypto signatures, and
 * data-channel sends. Patched once at load, recording only between `reset()` and `read()`.
 */
interface Tally {
  n: number
  bytes: number
  ms: number
}
let on = false
let tallies: Record<string, Tally> = {}

function add(key: string, bytes: number, ms = 0): void {
  if (!on) return
  const t = tallies[key] ?? { n: 0, bytes: 0, ms: 0 }
  tallies[key] = { n: t.n + 1, bytes: t.bytes + bytes, ms: t.ms + ms }
}

/** Bytes held in typed arrays inside a stored value (what dominates a record's size here). */
function sizeOf(v: unknown, depth = 0): number {
  if (ArrayBuffer.isView(v)) return v.byteLength
  if (v instanceof ArrayBuffer) return v.byteLength
  if (typeof v === 'string') return v.length
  if (depth > 8 || typeof v !== 'object' || v === null) return 8
  let n = 0
  for (const x of Object.values(v)) n += sizeOf(x, depth + 1)
  return n
}

const bytesOf = (d: BufferSource) => d.byteLength

export function installProbes(): void {
  const store = IDBObjectStore.prototype
  for (const op of ['put', 'add', 'delete'] as const) {
    const orig = store[op] as (...a: unknown[]) => IDBRequest
    store[op] = function (this: IDBObjectStore, ...a: unknown[]) {
      const t0 = performance.now()
      const req = orig.apply(this, a)
      if (on) {
        const key = `idb ${op} ${this.name}`
        const size = op === 'delete' ? 0 : sizeOf(a[0])
        req.addEventListener('success', () => add(key, size, performance.now() - t0))
      }
      return req
    } as never
  }
  const subtle = crypto.subtle
  const digest = subtle.digest.bind(subtle)
  subtle.digest = async (alg, data) => {
    const t0 = performance.now()
    const r = await digest(alg, data)
    add('sha256 (WebCrypto)', bytesOf(data), performance.now() - t0)
    return r
  }
  for (const op of ['sign', 'verify'] as const) {
    const orig = subtle[op].bind(subtle) as (...a: unknown[]) => Promise<unknown>
    ;(subtle as unknown as Record<string, unknown>)[op] = async (...a: unknown[]) => {
      const t0 = performance.now()
      const r = await orig(...a)
      add(`${op} (WebCrypto)`, 0, performance.now() - t0)
      return r
    }
  }
  const send = RTCDataChannel.prototype.send as (d: unknown) => void
  RTCDataChannel.prototype.send = function (this: RTCDataChannel, d: unknown) {
    add('datachannel send', typeof d === 'string' ? d.length : ((d as ArrayBufferView).byteLength ?? 0))
    send.call(this, d)
  } as never
}

export const probes = {
  reset(): void {
    tallies = {}
    on = true
  },
  read(): Record<string, Tally> {
    on = false
    return tallies
  },
}
