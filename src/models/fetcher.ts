/**
 * Fetches a model from peers over `/peer-compute/model/1.0.0`: chunks are split across up to `parallel`
 * providers (asked at once) and saved for resume; the whole file is checked against the CID. Chunks
 * are checked against the manifest by sampling while they arrive (every chunk of a provider that has
 * sent a bad one), and all unchecked ones when the CID does not match, so a bad chunk is fetched again
 * and blamed on its sender.
 */
import type { Logger, Stream } from '@libp2p/interface'
import { modelCid } from '../shared/cid.ts'
import { AbortError, describeError, ModelTransferError, UnknownModelError } from '../shared/errors.ts'
import { ProviderLink, sameManifest } from './link.ts'
import {
  chunkCount,
  chunkLength,
  chunkMatches,
  DEFAULT_CHUNK_SIZE,
  type Manifest,
  type ReceivedChunk,
} from './transfer.ts'

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
  /** Bytes per provider that ended up in the model. */
  providers: Record<string, number>
  ms: number
}

/** Corrupt chunks one provider may send before we stop asking it. */
const MAX_STRIKES = 3
/**
 * Share of chunks checked against the manifest as they arrive, after each provider's first
 * `CHECK_FIRST`: enough to drop a provider that sends garbage early, while a sparse liar is caught by
 * the CID. Checking every chunk hashed the model twice (about 4 % of a 50 MB fetch's time).
 */
const CHECK_SHARE = 1 / 8
const CHECK_FIRST = 2
/**
 * Held chunks are written to the chunk store (for resume) at most this often while a fetch runs,
 * and at once when it fails or is aborted: a fetch that completes sooner writes no chunk at all.
 * Each is checked against the manifest again when loaded.
 */
const SAVE_EVERY_MS = 10_000
/** Links opened to one provider whose streams fail with a bare Event (see `work`). */
const LINK_TRIES = 2
const LINK_RETRY_MS = 200
/** `have` value of a chunk copied into place and being checked; 1 means held. */
const CHECKING = 2

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
    const got = await attempt.run(candidates)
    if (got instanceof Uint8Array) {
      stats.ms = performance.now() - started
      return { bytes: got, stats }
    }
    // Every chunk matched the manifest, so the manifest itself lied: blame whoever sent it.
    for (const p of attempt.manifestFrom) blamed.add(p)
    reasons.push(`${[...attempt.manifestFrom]} sent a manifest for bytes that hash to ${got.actual}`)
    await o.chunks.clear(o.cid)
  }
}

class Attempt {
  private manifest: Manifest | undefined
  /** Set by the first manifest in; the other providers wait for it, then must agree with it. */
  private began: Promise<void> | undefined
  private out = new Uint8Array(0)
  private have = new Uint8Array(0)
  /** 1 where a chunk was checked against the manifest (or came from the chunk store, checked). */
  private checked = new Uint8Array(0)
  /** Who sent each held chunk. */
  private sender: string[] = []
  private strikes = new Map<string, number>()
  private held = 0
  private queue: number[] = []
  /** Held chunks not yet saved: indexes into `out`, copied out only when saved. */
  private toSave: number[] = []
  private savedAt = performance.now()
  /** Chunks saved by an earlier attempt, loading. */
  private stored: Promise<Map<number, Uint8Array>> = Promise.resolve(new Map())
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

  /** The verified model, or the CID its bytes hash to when every chunk matched a lying manifest. */
  async run(candidates: string[]): Promise<Uint8Array | { actual: string }> {
    // Read while the first provider's stream opens and its manifest comes.
    this.stored = this.o.chunks.load(this.o.cid).catch((err: Error) => {
      this.o.log?.('loading saved chunks failed: %s', err.message)
      return new Map<number, Uint8Array>()
    })
    let untried = [...candidates]
    /** Running downloads by provider: one link per provider. */
    const workers = new Map<string, Promise<void>>()
    const parallel = Math.max(1, this.o.parallel ?? 2)
    const settled = () => Promise.race(workers.values())
    const onAbort = () => this.wakeUp()
    this.signal.addEventListener('abort', onAbort)
    try {
      for (;;) {
        while (!this.done) {
          if (this.signal.aborted) throw new AbortError('model fetch aborted')
          // All providers at once: each one's manifest (a cache read and hash on its side) overlaps.
          while (workers.size < parallel && untried.length > 0 && !this.done) {
            const peer = untried.shift()!
            const w: Promise<void> = this.work(peer)
              .catch(() => {}) // recorded in `failed`
              .finally(() => workers.get(peer) === w && workers.delete(peer))
            workers.set(peer, w)
          }
          if (this.done) break
          if (workers.size === 0) throw this.failure(candidates)
          await settled()
        }
        const actual = (await modelCid(this.out)).toString()
        if (actual === this.o.cid) {
          this.toSave = [] // complete: the caller stores the model and clears the chunks
          return this.out
        }
        if (this.signal.aborted) throw new AbortError('model fetch aborted')
        if ((await this.recheck()) === 0) return { actual }
        // Bad chunks are queued again: ask every provider in good standing whose link has closed.
        untried = candidates.filter((p) => !this.failed.has(p) && !workers.has(p))
      }
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

  /**
   * The CID did not match: checks every unchecked chunk against the manifest, drops and queues again
   * the bad ones, and strikes their senders. Returns how many were bad.
   */
  private async recheck(): Promise<number> {
    const m = this.manifest!
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
      this.strike(this.sender[i]!)
      this.requeue([i])
    }
    this.toSave = this.toSave.filter((i) => this.have[i])
    this.progress()
    return bad
  }

  /** Counts a corrupt chunk against `peer`; past `MAX_STRIKES` it is no longer asked. */
  private strike(peer: string): void {
    this.stats.corrupt++
    const n = (this.strikes.get(peer) ?? 0) + 1
    this.strikes.set(peer, n)
    if (n > MAX_STRIKES) this.failed.set(peer, new ModelTransferError(`${peer} sent ${n} corrupt chunks`))
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

  /**
   * Downloads from one provider until every chunk is held, or the provider fails. A stream that fails
   * with a bare Event (its data channel closed while opening) is the transport's doing, not the
   * provider's: its link is opened again, up to `LINK_TRIES` in all.
   */
  private async work(peer: string): Promise<void> {
    for (let tries = 1; ; tries++) {
      try {
        return await this.download(peer)
      } catch (thrown) {
        if (this.signal.aborted) throw new AbortError('model fetch aborted')
        const transport = !(thrown instanceof Error)
        const err = transport ? new ModelTransferError(`stream failed: ${describeError(thrown)}`) : thrown
        this.o.log?.('model fetch from %s failed: %s', peer, err.message)
        if (transport && tries < LINK_TRIES && !this.done) {
          await new Promise((r) => setTimeout(r, LINK_RETRY_MS)) // a closing connection goes meanwhile
          if (this.signal.aborted) throw new AbortError('model fetch aborted')
          if (this.done) return // the other providers finished meanwhile
          const struck = this.failed.get(peer) // by a recheck meanwhile
          if (struck) throw struck
          continue
        }
        this.failed.set(peer, err)
        throw err
      }
    }
  }

  /** One link to `peer`: what it still owed is queued again when it fails. */
  private async download(peer: string): Promise<void> {
    let link: ProviderLink | undefined
    let received = 0
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
      while (!this.done && !this.failed.has(peer)) {
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
        const chunk = await link.next()
        this.stats.transferred += chunk.byteLength
        if (this.have[chunk.index]) continue // a requeued chunk that another provider delivered meanwhile
        const check = received++ < CHECK_FIRST || this.strikes.has(peer) || Math.random() < CHECK_SHARE
        if (!(await this.place(link.manifest, chunk, check))) {
          this.strike(peer)
          this.requeue([chunk.index])
          const err = this.failed.get(peer)
          if (err) throw err
          continue
        }
        this.accept(peer, chunk.index, chunk.byteLength, check)
      }
      // Struck out by a recheck while its link was open: the catch gives back what it still owed.
      const struck = this.failed.get(peer)
      if (struck) throw struck
      void link.close()
    } catch (err) {
      if (link) {
        this.requeue(link.pending.filter((i) => !this.have[i]))
        link.abort(err instanceof Error ? err : new ModelTransferError(describeError(err)))
      }
      throw err
    }
  }

  /** Takes the first manifest: sizes the output, then reuses stored chunks that match it. */
  private async begin(m: Manifest): Promise<void> {
    this.manifest = m
    const n = chunkCount(m.size, m.chunkSize)
    this.out = new Uint8Array(m.size)
    this.have = new Uint8Array(n)
    this.checked = new Uint8Array(n)
    this.stats.size = m.size
    const stored = await this.stored
    for (const [index, bytes] of stored) {
      if (index >= n || !(await chunkMatches(m, index, bytes))) continue
      this.out.set(bytes, index * m.chunkSize)
      this.have[index] = 1
      this.checked[index] = 1
      this.held++
      this.loaded += bytes.byteLength
      this.stats.resumed += bytes.byteLength
    }
    for (let i = 0; i < n; i++) if (!this.have[i]) this.queue.push(i)
    this.progress()
  }

  /**
   * Copies a chunk into its place in the model (its only copy) and, if `check`, checks it there. The
   * place is marked as being checked meanwhile, so no other provider's copy of the chunk lands on it.
   */
  private async place(m: Manifest, chunk: ReceivedChunk, check: boolean): Promise<boolean> {
    const at = chunk.index * this.chunkSize
    let off = at
    for (const p of chunk.parts) {
      this.out.set(p, off)
      off += p.byteLength
    }
    this.have[chunk.index] = CHECKING // until accepted or dropped
    if (!check) return true
    let ok = false
    try {
      ok = await chunkMatches(m, chunk.index, this.out.subarray(at, off))
      return ok
    } finally {
      if (!ok) this.have[chunk.index] = 0
    }
  }

  private accept(peer: string, index: number, bytes: number, checked: boolean): void {
    this.have[index] = 1
    this.checked[index] = checked ? 1 : 0
    this.sender[index] = peer
    this.held++
    this.loaded += bytes
    this.stats.providers[peer] = (this.stats.providers[peer] ?? 0) + bytes
    this.toSave.push(index)
    if (performance.now() - this.savedAt >= SAVE_EVERY_MS) this.flush()
    this.progress()
    if (this.done) this.wakeUp()
  }

  /** Drops held chunk `index` (it failed its digest after all). */
  private release(index: number): void {
    const bytes = chunkLength(this.manifest!.size, this.chunkSize, index)
    const peer = this.sender[index]!
    this.have[index] = 0
    this.held--
    this.loaded -= bytes
    this.stats.providers[peer] = (this.stats.providers[peer] ?? 0) - bytes
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
