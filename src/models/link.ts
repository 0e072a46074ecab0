/** The fetcher's end of one provider stream: ask for the manifest, then pipeline range requests. */
import type { Stream } from '@libp2p/interface'
import type { Frame } from '../net/frame.ts'
import { MalformedFrameError, ModelTransferError } from '../shared/errors.ts'
import { FrameReader, sendBytes } from './stream.ts'
import {
  chunkLimit,
  encodeTransfer,
  MAX_ERROR_BYTES,
  MAX_RANGE,
  MAX_REQUEST_BYTES,
  type Manifest,
  manifestLimit,
  parseChunk,
  parseManifest,
  parseTransferError,
  type ReceivedChunk,
} from './transfer.ts'

export interface LinkOptions {
  cid: string
  chunkSize: number
  maxBytes: number
  timeoutMs: number
  signal: AbortSignal
}

/** A provider's refusal or a broken stream; `code` is the provider's error code when it sent one. */
function failure(peer: string, frame: Frame | null): Error {
  if (frame == null) return new ModelTransferError(`${peer} closed the model stream early`)
  if (frame.t !== 'error')
    return new MalformedFrameError(`${peer} sent an unexpected '${String(frame.t)}' frame`)
  const e = parseTransferError(frame)
  return Object.assign(new ModelTransferError(`${peer} refused (${e.code}): ${e.reason}`), { code: e.code })
}

export class ProviderLink {
  /** Chunk indexes asked for and not yet received, in the order the provider sends them. */
  readonly pending: number[] = []
  private reader: FrameReader

  private constructor(
    readonly peer: string,
    private readonly stream: Stream,
    readonly manifest: Manifest,
    reader: FrameReader,
    private readonly opts: LinkOptions,
  ) {
    this.reader = reader
  }

  /** Opens the stream and reads a manifest that matches the CID, chunk size and size limit. */
  static async open(peer: string, stream: Stream, opts: LinkOptions): Promise<ProviderLink> {
    const limit = Math.max(manifestLimit(opts.maxBytes, opts.chunkSize), MAX_ERROR_BYTES)
    const reader = new FrameReader(stream, limit)
    try {
      const ask = { t: 'get-manifest', v: 1, cid: opts.cid, chunkSize: opts.chunkSize } as const
      await sendBytes(stream, encodeTransfer(ask, MAX_REQUEST_BYTES), opts.signal)
      const frame = await reader.next(opts.timeoutMs, opts.signal)
      if (frame?.t !== 'manifest') throw failure(peer, frame)
      const manifest = parseManifest(frame, {
        cid: opts.cid,
        chunkSize: opts.chunkSize,
        maxBytes: opts.maxBytes,
      })
      reader.setLimit(Math.max(chunkLimit(opts.chunkSize), MAX_ERROR_BYTES))
      return new ProviderLink(peer, stream, manifest, reader, opts)
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  }

  /** Chunks per `get`: about 2 MiB of data, so two outstanding requests keep the pipe full. */
  get batch(): number {
    return Math.max(1, Math.min(MAX_RANGE, Math.floor((2 * 1024 * 1024) / this.manifest.chunkSize)))
  }

  /** Asks for `count` chunks from `from`. */
  async request(from: number, count: number): Promise<void> {
    for (let i = 0; i < count; i++) this.pending.push(from + i)
    const msg = { t: 'get', v: 1, from, count } as const
    await sendBytes(this.stream, encodeTransfer(msg, MAX_REQUEST_BYTES), this.opts.signal)
  }

  /** The next chunk asked for, as views of the received data (shape and length checked, digest not yet). */
  async next(): Promise<ReceivedChunk> {
    const index = this.pending[0]
    if (index === undefined) throw new Error('no chunk requested')
    const frame = await this.reader.next(this.opts.timeoutMs, this.opts.signal)
    if (frame?.t !== 'chunk') throw failure(this.peer, frame)
    const chunk = parseChunk(frame, this.manifest, index)
    this.pending.shift()
    return chunk
  }

  /** Ends our side cleanly; the provider sees the end of requests and closes. */
  async close(): Promise<void> {
    await this.stream.close({ signal: AbortSignal.timeout(5000) }).catch(() => this.abort(new Error('close')))
  }

  abort(err: Error): void {
    this.stream.abort(err)
  }
}

/** Two manifests for the same CID and chunk size agree on size and every digest. */
export const sameManifest = (a: Manifest, b: Manifest) =>
  a.size === b.size &&
  a.digests.byteLength === b.digests.byteLength &&
  a.digests.every((x, i) => x === b.digests[i])
