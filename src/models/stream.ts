/** Multi-frame I/O on one libp2p stream: a persistent decoder, a per-read deadline, and backpressure. */
import type { Stream } from '@libp2p/interface'
import { type Frame, FrameDecoder, readFrame, sendEncoded } from '../net/frame.ts'
import { AbortError, MalformedFrameError, ModelTransferError } from '../shared/errors.ts'
import { parseTransferBody } from './transfer.ts'

/** Sends one encoded frame, waiting while the transport is full (`sendEncoded`). */
export function sendBytes(stream: Stream, bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
  return sendEncoded(stream, bytes, signal ? { signal, closed } : { closed })
}

const closed = () => new ModelTransferError('stream closed while waiting to send')

export class FrameReader {
  private decoder: FrameDecoder

  constructor(
    private readonly stream: Stream,
    limit: number,
  ) {
    this.decoder = new FrameDecoder(limit, parseTransferBody)
  }

  /** Changes the frame size limit; only between frames, with nothing queued. */
  setLimit(limit: number): void {
    if (!this.decoder.idle || this.decoder.queue.length > 0)
      throw new MalformedFrameError('peer sent a frame it was not asked for')
    this.decoder = new FrameDecoder(limit, parseTransferBody)
  }

  /** The next frame, or null at a clean end; aborts the stream if none arrives within `timeoutMs`. */
  async next(timeoutMs: number, signal?: AbortSignal): Promise<Frame | null> {
    let timer: ReturnType<typeof setTimeout> | undefined
    let onAbort: (() => void) | undefined
    const stop = new Promise<never>((_, reject) => {
      const fail = (err: Error) => {
        this.stream.abort(err)
        reject(err)
      }
      timer = setTimeout(() => fail(new ModelTransferError(`no frame within ${timeoutMs} ms`)), timeoutMs)
      onAbort = () => fail(new AbortError('transfer aborted'))
      if (signal?.aborted) onAbort()
      else signal?.addEventListener('abort', onAbort, { once: true })
    })
    try {
      return await Promise.race([readFrame(this.stream, this.decoder), stop])
    } finally {
      clearTimeout(timer)
      if (onAbort) signal?.removeEventListener('abort', onAbort)
    }
  }
}
