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
import { Assembly, type ChunkStore, type FetchStats } from './assembly.ts'

export type { ChunkStore, FetchStats }

import { ProviderLink, sameManifest } from './link.ts'
import { DEFAULT_CHUNK_SIZE, type Manifest } from './transfer.ts'

/** Where chunks of an unfinished transfer are kept between attempts (IndexedDB in the app). */
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

/** Corrupt chunks one provider may send before we stop asking it. */
const MAX_STRIKES = 3
/**
 * Share of chunks checked against the manifest as they arrive, after each provider's first
 * `CHECK_FIRST`: enough to drop a provider that sends garbage early, while a sparse liar is caught by
 * the CID. Checking every chunk hashed the model twice (about 4 % of a 50 MB fetch's time).
 */
const CHECK_SHARE = 1 / 8
const CHECK_FIRST = 2
/** Links opened to one provider whose streams fail with a bare Event (see `work`). */
const LINK_TRIES = 2
const LINK_RETRY_MS = 200

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

/** One pass over the providers under one manifest; `fetchFromPeers` starts another if the manifest lied. */
class Attempt {
  /** The first manifest in; the other providers must agree with it. */
  private manifest: Manifest | undefined
  /** Set by the first manifest in; the other providers wait for it. */
  private began: Promise<void> | undefined
  /** The model under that manifest, once stored chunks are reused. */
  private model: Assembly | undefined
  private strikes = new Map<string, number>()
  /** Chunks saved by an earlier attempt, loading. */
  private stored: Promise<Map<number, Uint8Array>> = Promise.resolve(new Map())
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
    const onAbort = () => this.model?.wakeUp()
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
        const model = this.model!
        const actual = (await modelCid(model.out)).toString()
        if (actual === this.o.cid) return model.complete() // the caller stores it and clears the chunks
        if (this.signal.aborted) throw new AbortError('model fetch aborted')
        if ((await model.recheck((peer) => this.strike(peer))) === 0) return { actual }
        // Bad chunks are queued again: ask every provider in good standing whose link has closed.
        untried = candidates.filter((p) => !this.failed.has(p) && !workers.has(p))
      }
    } finally {
      this.signal.removeEventListener('abort', onAbort)
      this.model?.flush()
      await this.model?.saving
      for (const p of candidates) {
        const err = this.failed.get(p)
        if (err) this.reasons.push(`${p}: ${err.message}`)
      }
    }
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
    return this.model?.done ?? false
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
      const model = this.model!
      while (!this.done && !this.failed.has(peer)) {
        if (this.signal.aborted) throw new AbortError('model fetch aborted')
        // One to two ranges outstanding: the pipe stays full and other providers still find work.
        while (link.pending.length <= link.batch) {
          const range = model.nextRange(link.batch) // a contiguous run
          if (range == null) break
          await link.request(range.from, range.count)
        }
        if (link.pending.length === 0) {
          await model.moreWork() // others hold the rest: wait for requeues or the end
          continue
        }
        const chunk = await link.next()
        this.stats.transferred += chunk.byteLength
        if (model.has(chunk.index)) continue // a requeued chunk that another provider delivered meanwhile
        const check = received++ < CHECK_FIRST || this.strikes.has(peer) || Math.random() < CHECK_SHARE
        if (!(await model.place(chunk, check))) {
          this.strike(peer)
          model.requeue([chunk.index])
          const err = this.failed.get(peer)
          if (err) throw err
          continue
        }
        model.accept(peer, chunk.index, chunk.byteLength, check)
      }
      // Struck out by a recheck while its link was open: the catch gives back what it still owed.
      const struck = this.failed.get(peer)
      if (struck) throw struck
      void link.close()
    } catch (err) {
      if (link) {
        const model = this.model
        model?.requeue(link.pending.filter((i) => !model.has(i)))
        link.abort(err instanceof Error ? err : new ModelTransferError(describeError(err)))
      }
      throw err
    }
  }

  /** Takes the first manifest: the model is sized by it and reuses stored chunks that match it. */
  private async begin(m: Manifest): Promise<void> {
    this.manifest = m
    const { cid, chunks, onProgress, log } = this.o
    this.model = await Assembly.begin(m, await this.stored, {
      cid,
      chunks,
      stats: this.stats,
      onProgress,
      log,
    })
  }
}
