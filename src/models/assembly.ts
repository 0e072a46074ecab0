/**
 * A model being put together from chunks under one manifest: which chunks are held, checked and by
 * whom, which are still to ask for, and the held ones saved for resume. The fetcher's providers
 * (`fetcher.ts`) feed it; it knows nothing of streams.
 */
import type { Logger } from '@libp2p/interface'
import { chunkCount, chunkLength, chunkMatches, type Manifest, type ReceivedChunk } from './transfer.ts'

/**
 * Held chunks are written to the chunk store (for resume) at most this often while a fetch runs,
 * and at once when it fails or is aborted: a fetch that completes sooner writes no chunk at all.
 * Each is checked against the manifest again when loaded.
 */
const SAVE_EVERY_MS = 10_000
/** `have` value of a chunk copied into place and being checked; 1 means held. */
const CHECKING = 2

export interface ChunkStore {
  load(cid: string): Promise<Map<number, Uint8Array>>
  save(cid: string, chunks: { index: number; bytes: Uint8Array }[]): Promise<void>
  clear(cid: string): Promise<void>
}

export interface FetchStats {
  size: number
  chunkSize: number
  /** Chunk bytes received from peers, corrupt ones included. */
  transferred: number
  /** Bytes reused from chunks stored by an earlier, interrupted attempt. */
  resumed: number
  /** Chunks that failed their digest and were asked for again. */
  corrupt: number
  /** Bytes per provider that ended up in the model. */
  providers: Record<string, number>
  ms: number
}

export interface AssemblyOptions {
  cid: string
  chunks: ChunkStore
  stats: FetchStats
  onProgress?(p: { loaded: number; total: number }): void
  log?: Logger
}

export class Assembly {
  readonly out: Uint8Array
  private readonly have: Uint8Array
  /** 1 where a chunk was checked against the manifest (or came from the chunk store, checked). */
  private readonly checked: Uint8Array
  /** Who sent each held chunk. */
  private readonly sender: string[] = []
  private held = 0
  private loaded = 0
  /** Chunks to ask for, in order; a dropped one goes back to the front. */
  private readonly queue: number[] = []
  /** Held chunks not yet saved: indexes into `out`, copied out only when saved. */
  private toSave: number[] = []
  private savedAt = performance.now()
  /** The saves under way, in order. */
  saving: Promise<void> = Promise.resolve()
  private waiters: (() => void)[] = []

  private constructor(
    readonly manifest: Manifest,
    private readonly o: AssemblyOptions,
  ) {
    const n = chunkCount(manifest.size, manifest.chunkSize)
    this.out = new Uint8Array(manifest.size)
    this.have = new Uint8Array(n)
    this.checked = new Uint8Array(n)
    o.stats.size = manifest.size
  }

  /** Sizes the output for `m`, then reuses the stored chunks that match it; the rest are to ask for. */
  static async begin(m: Manifest, stored: Map<number, Uint8Array>, o: AssemblyOptions): Promise<Assembly> {
    const a = new Assembly(m, o)
    const n = a.have.length
    for (const [index, bytes] of stored) {
      if (index >= n || !(await chunkMatches(m, index, bytes))) continue
      a.out.set(bytes, index * m.chunkSize)
      a.have[index] = 1
      a.checked[index] = 1
      a.held++
      a.loaded += bytes.byteLength
      o.stats.resumed += bytes.byteLength
    }
    for (let i = 0; i < n; i++) if (!a.have[i]) a.queue.push(i)
    a.progress()
    return a
  }

  get done(): boolean {
    return this.held === this.have.length
  }

  /** True when chunk `index` is held or being checked: a copy from another provider is not needed. */
  has(index: number): boolean {
    return this.have[index] !== 0
  }

  /** The next contiguous run of at most `batch` chunks to ask for, taken off the queue. */
  nextRange(batch: number): { from: number; count: number } | undefined {
    const from = this.queue.shift()
    if (from === undefined) return undefined
    let count = 1
    while (count < batch && this.queue[count - 1] === from + count) count++
    this.queue.splice(0, count - 1)
    return { from, count }
  }

  /** Resolves when chunks are queued again or the model is complete (or on `wakeUp`). */
  moreWork(): Promise<void> {
    return new Promise<void>((r) => this.waiters.push(r))
  }

  wakeUp(): void {
    for (const w of this.waiters.splice(0)) w()
  }

  /**
   * Copies a chunk into its place in the model (its only copy) and, if `check`, checks it there. The
   * place is marked as being checked meanwhile, so no other provider's copy of the chunk lands on it.
   */
  async place(chunk: ReceivedChunk, check: boolean): Promise<boolean> {
    const at = chunk.index * this.manifest.chunkSize
    let off = at
    for (const p of chunk.parts) {
      this.out.set(p, off)
      off += p.byteLength
    }
    this.have[chunk.index] = CHECKING // until accepted or dropped
    if (!check) return true
    let ok = false
    try {
      ok = await chunkMatches(this.manifest, chunk.index, this.out.subarray(at, off))
      return ok
    } finally {
      if (!ok) this.have[chunk.index] = 0
    }
  }

  accept(peer: string, index: number, bytes: number, checked: boolean): void {
    this.have[index] = 1
    this.checked[index] = checked ? 1 : 0
    this.sender[index] = peer
    this.held++
    this.loaded += bytes
    this.o.stats.providers[peer] = (this.o.stats.providers[peer] ?? 0) + bytes
    this.toSave.push(index)
    if (performance.now() - this.savedAt >= SAVE_EVERY_MS) this.flush()
    this.progress()
    if (this.done) this.wakeUp()
  }

  requeue(indexes: number[]): void {
    if (indexes.length === 0) return
    this.queue.unshift(...indexes)
    this.wakeUp()
  }

  /**
   * The CID did not match: checks every unchecked chunk against the manifest, drops and queues again
   * the bad ones, and tells `strike` their senders. Returns how many were bad.
   */
  async recheck(strike: (peer: string) => void): Promise<number> {
    const m = this.manifest
    let bad = 0
    for (let i = 0; i < this.have.length; i++) {
      if (this.checked[i]) continue
      const at = i * m.chunkSize
      if (await chunkMatches(m, i, this.out.subarray(at, at + chunkLength(m.size, m.chunkSize, i)))) {
        this.checked[i] = 1
        continue
      }
      bad++
      this.release(i)
      strike(this.sender[i]!)
      this.requeue([i])
    }
    this.toSave = this.toSave.filter((i) => this.have[i])
    this.progress()
    return bad
  }

  /** Drops held chunk `index` (it failed its digest after all). */
  private release(index: number): void {
    const bytes = chunkLength(this.manifest.size, this.manifest.chunkSize, index)
    const peer = this.sender[index]!
    this.have[index] = 0
    this.held--
    this.loaded -= bytes
    this.o.stats.providers[peer] = (this.o.stats.providers[peer] ?? 0) - bytes
  }

  /** The model is complete and verified: nothing left to save, the caller clears the stored chunks. */
  complete(): Uint8Array {
    this.toSave = []
    return this.out
  }

  /** Saves the held chunks not saved yet (after the saves before them). */
  flush(): void {
    this.savedAt = performance.now()
    if (this.toSave.length === 0) return
    const size = this.manifest.chunkSize
    // slice: each record gets its own buffer (cloning a view would store all of `out`)
    const batch = this.toSave.map((index) => ({
      index,
      bytes: this.out.slice(index * size, (index + 1) * size),
    }))
    this.toSave = []
    this.saving = this.saving
      .then(() => this.o.chunks.save(this.o.cid, batch))
      .catch((err) => {
        this.o.log?.('saving chunks failed: %s', (err as Error).message)
      })
  }

  private progress(): void {
    this.o.onProgress?.({ loaded: this.loaded, total: this.manifest.size })
  }
}
