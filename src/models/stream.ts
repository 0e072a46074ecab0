/** Multi-frame I/O on one libp2p stream: a persistent decoder, a per-read deadline, and backpressure. */
import type { Stream } from '@libp2p/interface'
import { type Frame, FrameDecoder, readFrame } from '../net/frame.ts'
import { AbortError, MalformedFrameError, ModelTransferError } from '../shared/errors.ts'
import { parseTransferBody } from './transfer.ts'

/**
 * Sends one encoded frame; when `send` says the transport is full, waits for a `drain` event. Not
 * `onDrain()`: in @libp2p/utils 7.4 its promise stays resolved after the first drain, so it stops waiting.
 */
export async function sendBytes(stream: Stream, bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
  if (stream.send(bytes)) return
  while (stream.writableNeedsDrain) await nextDrain(stream, signal)
}

function nextDrain(stream: Stream, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted()
  if (stream.status !== 'open') return Promise.reject(new ModelTransferError(`stream is ${stream.status}`))
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      stream.removeEventListener('drain', onDrain)
      stream.removeEventListener('close', onClose)
      signal?.removeEventListener('abort', onAbort)
      if (err) reject(err)
      else resolve()
    }
    const onDrain = () => done()
    const onClose = () => done(new ModelTransferError('stream closed while waiting to send'))
    const onAbort = () => done(new AbortError('transfer aborted'))
    stream.addEventListener('drain', onDrain)
    stream.addEventListener('close', onClose)
    signal?.addEventListener('abort', onAbort)
  })
}

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
