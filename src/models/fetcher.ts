/**
 * Fetches a model from peers over `/peer-compute/model/1.0.0`: chunks are split across up to `parallel`
 * providers (asked at once), each checked against the manifest, saved for resume, and the whole file
 * against the CID.
 */
import type { Logger, Stream } from '@libp2p/interface'
import { modelCid } from '../shared/cid.ts'
import { AbortError, ModelTransferError, UnknownModelError } from '../shared/errors.ts'
import { ProviderLink, sameManifest } from './link.ts'
import { chunkCount, chunkMatches, DEFAULT_CHUNK_SIZE, type Manifest } from './transfer.ts'

/** Where chunks of an unfinished transfer are kept between attempts (IndexedDB in the app). */
export interface ChunkStore {
  load(cid: string): Promise<Map<number, Uint8Array>>
  save(cid: string, chunks: { index: number; bytes: Uint8Array }[]): Promise<void>
  clear(cid: string): Promise<void>
}

export interface FetchOptions {
  cid: string
  /** Candidate PeerIds, best first. */
  providers: string[]
  /** Opens a model-protocol stream to `peer` over a direct connection. */
  open(peer: string, signal: AbortSignal): Promise<Stream>
  chunks: ChunkStore
  /** Manifests declaring more bytes are refused before any chunk is asked for. */
  maxBytes: number
  chunkSize?: number
  /** Providers used at once (chunks are split between them). */
  parallel?: number
  timeoutMs?: number
  signal?: AbortSignal
  onProgress?(p: { loaded: number; total: number }): void
  log?: Logger
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
  /** Verified bytes per provider. */
  providers: Record<string, number>
  ms: number
}

/** Corrupt chunks one provider may send before we stop asking it. */
const MAX_STRIKES = 3
/**
 * Verified chunks are written to the chunk store (for resume) at most this often while a fetch runs,
 * and at once when it fails or is aborted: a fetch that completes sooner writes no chunk at all.
 */
const SAVE_EVERY_MS = 10_000

export async function fetchFromPeers(o: FetchOptions): Promise<{ bytes: Uint8Array; stats: FetchStats }> {
  const started = performance.now()
  const chunkSize = o.chunkSize ?? DEFAULT_CHUNK_SIZE
  const signal = o.signal ?? new AbortController().signal
  const blamed = new Set<string>()
  const reasons: string[] = []
  const stats: FetchStats = {
    size: 0,
    chunkSize,
    transferred: 0,
    resumed: 0,
    corrupt: 0,
    providers: {},
    ms: 0,
  }
  for (;;) {
    const candidates = o.providers.filter((p) => !blamed.has(p))
    if (candidates.length === 0)
      throw new ModelTransferError(`no peer could provide ${o.cid}: ${reasons.join('; ') || 'no providers'}`)
    const attempt = new Attempt(o, chunkSize, signal, stats, reasons)
    const bytes = await attempt.run(candidates)
    const actual = (await modelCid(bytes)).toString()
    if (actual === o.cid) {
      stats.ms = performance.now() - started
      return { bytes, stats }
    }
    // Every chunk matched the manifest, so the manifest itself lied: blame whoever sent it.
    for (const p of attempt.manifestFrom) blamed.add(p)
    reasons.push(`${[...attempt.manifestFrom]} sent a manifest for bytes that hash to ${actual}`)
    await o.chunks.clear(o.cid)
  }
}

class Attempt {
  private manifest: Manifest | undefined
  /** Set by the first manifest in; the other providers wait for it, then must agree with it. */
  private began: Promise<void> | undefined
  private out = new Uint8Array(0)
  private have = new Uint8Array(0)
  private held = 0
  private queue: number[] = []
  /** Verified chunks not yet saved: indexes into `out`, copied out only when saved. */
  private toSave: number[] = []
  private savedAt = performance.now()
  private saving: Promise<void> = Promise.resolve()
  private waiters: (() => void)[] = []
  private loaded = 0
  /** This attempt's failed providers, reported in candidate order. */
  private failed = new Map<string, Error>()
  readonly manifestFrom = new Set<string>()

  constructor(
    private readonly o: FetchOptions,
    private readonly chunkSize: number,
    private readonly signal: AbortSignal,
    private readonly stats: FetchStats,
    private readonly reasons: string[],
  ) {}

  async run(candidates: string[]): Promise<Uint8Array> {
    const untried = [...candidates]
    const workers = new Set<Promise<void>>()
    const parallel = Math.max(1, this.o.parallel ?? 2)
    const settled = () => Promise.race(workers)
    const onAbort = () => this.wakeUp()
    this.signal.addEventListener('abort', onAbort)
    try {
      while (!this.done) {
        if (this.signal.aborted) throw new AbortError('model fetch aborted')
        // All providers at once: each one's manifest (a cache read and hash on its side) overlaps.
        while (workers.size < parallel && untried.length > 0 && !this.done) {
          const w: Promise<void> = this.work(untried.shift()!)
            .catch(() => {}) // recorded in `failed`
            .finally(() => workers.delete(w))
          workers.add(w)
        }
        if (this.done) break
        if (workers.size === 0) throw this.failure(candidates)
        await settled()
      }
      this.toSave = [] // complete: the caller stores the model and clears the chunks
      return this.out
    } finally {
      this.signal.removeEventListener('abort', onAbort)
      this.flush()
      await this.saving
      for (const p of candidates) {
        const err = this.failed.get(p)
        if (err) this.reasons.push(`${p}: ${err.message}`)
      }
    }
  }

  /** Every provider failed: the error all of them agree on (too large, unknown), else a transfer error. */
  private failure(candidates: string[]): Error {
    const errors = [...this.failed.values()]
    const reasons = [...this.reasons, ...candidates.flatMap((p) => this.failedReason(p))]
    const why = `no peer could provide ${this.o.cid}: ${reasons.join('; ')}`
    const all = (test: (e: Error) => boolean) => errors.length > 0 && errors.every(test)
    if (all((e) => e.name === 'ModelTooLargeError')) return errors[0]!
    if (all((e) => (e as { code?: string }).code === 'unknown-model')) return new UnknownModelError(why)
    return new ModelTransferError(why)
  }

  private failedReason(peer: string): string[] {
    const err = this.failed.get(peer)
    return err ? [`${peer}: ${err.message}`] : []
  }

  private get done(): boolean {
    return this.manifest != null && this.held === this.have.length
  }

  /** Downloads from one provider until every chunk is held, or the provider fails. */
  private async work(peer: string): Promise<void> {
    let link: ProviderLink | undefined
    let strikes = 0
    try {
      const stream = await this.o.open(peer, this.signal)
      const opts = {
        cid: this.o.cid,
        chunkSize: this.chunkSize,
        maxBytes: this.o.maxBytes,
        timeoutMs: this.o.timeoutMs ?? 20_000,
        signal: this.signal,
      }
      link = await ProviderLink.open(peer, stream, opts)
      if (this.began == null) this.began = this.begin(link.manifest)
      else if (!sameManifest(this.manifest!, link.manifest))
        throw new ModelTransferError(`${peer} disagrees on the manifest`)
      this.manifestFrom.add(peer)
      await this.began
      while (!this.done) {
        if (this.signal.aborted) throw new AbortError('model fetch aborted')
        // One to two ranges outstanding: the pipe stays full and other providers still find work.
        while (link.pending.length <= link.batch && this.queue.length > 0) {
          const from = this.queue.shift()!
          let count = 1
          while (count < link.batch && this.queue[count - 1] === from + count) count++ // a contiguous run
          this.queue.splice(0, count - 1)
          await link.request(from, count)
        }
        if (link.pending.length === 0) {
          await new Promise<void>((r) => this.waiters.push(r)) // others hold the rest: wait for requeues or the end
          continue
        }
        const { index, bytes } = await link.next()
        this.stats.transferred += bytes.byteLength
        if (this.have[index]) continue // a requeued chunk that another provider delivered meanwhile
        if (!(await chunkMatches(link.manifest, index, bytes))) {
          this.stats.corrupt++
          this.requeue([index])
          if (++strikes > MAX_STRIKES) throw new ModelTransferError(`${peer} sent ${strikes} corrupt chunks`)
          continue
        }
        this.accept(peer, index, bytes)
      }
      void link.close()
    } catch (err) {
      if (link) {
        this.requeue(link.pending.filter((i) => !this.have[i]))
        link.abort(err as Error)
      }
      if (this.signal.aborted) throw new AbortError('model fetch aborted')
      this.failed.set(peer, err as Error)
      this.o.log?.('model fetch from %s failed: %s', peer, (err as Error).message)
      throw err
    }
  }

  /** Takes the first manifest: sizes the output, then reuses stored chunks that match it. */
  private async begin(m: Manifest): Promise<void> {
    this.manifest = m
    const n = chunkCount(m.size, m.chunkSize)
    this.out = new Uint8Array(m.size)
    this.have = new Uint8Array(n)
    this.stats.size = m.size
    const stored = await this.o.chunks.load(this.o.cid).catch((err: Error) => {
      this.o.log?.('loading saved chunks failed: %s', err.message)
      return new Map<number, Uint8Array>()
    })
    for (const [index, bytes] of stored) {
      if (index >= n || !(await chunkMatches(m, index, bytes))) continue
      this.out.set(bytes, index * m.chunkSize)
      this.have[index] = 1
      this.held++
      this.loaded += bytes.byteLength
      this.stats.resumed += bytes.byteLength
    }
    for (let i = 0; i < n; i++) if (!this.have[i]) this.queue.push(i)
    this.progress()
  }

  private accept(peer: string, index: number, bytes: Uint8Array): void {
    this.out.set(bytes, index * this.chunkSize)
    this.have[index] = 1
    this.held++
    this.loaded += bytes.byteLength
    this.stats.providers[peer] = (this.stats.providers[peer] ?? 0) + bytes.byteLength
    this.toSave.push(index)
    if (performance.now() - this.savedAt >= SAVE_EVERY_MS) this.flush()
    this.progress()
    if (this.done) this.wakeUp()
  }

  private requeue(indexes: number[]): void {
    if (indexes.length === 0) return
    this.queue.unshift(...indexes)
    this.wakeUp()
  }

  private wakeUp(): void {
    for (const w of this.waiters.splice(0)) w()
  }

  private flush(): void {
    this.savedAt = performance.now()
    if (this.toSave.length === 0) return
    const size = this.chunkSize
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
    this.o.onProgress?.({ loaded: this.loaded, total: this.manifest!.size })
  }
}
