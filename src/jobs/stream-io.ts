/** Frame I/O over a libp2p v3 message stream, honouring backpressure and a read deadline. */
import { type Stream, StreamStateError } from '@libp2p/interface'
import {
  type ByteBudget,
  encodeFrame,
  type Frame,
  FrameDecoder,
  type FrameSink,
  readFrame,
  sendEncoded,
} from '../net/frame.ts'
import { JobTimeoutError } from '../shared/errors.ts'

export { frameBytes } from '../net/frame.ts'

// A stream aborted under us (timeout, cancel, reset) fails the send with the abort's own error.
const closed = (cause?: Error) =>
  cause ?? new StreamStateError('the job stream closed before it took the frame')

/**
 * Sends one frame; resolves to its encoded length in bytes once the stream has handed it on with
 * room to spare, on a reused stream as on a fresh one.
 */
export async function sendFrame(stream: FrameSink, msg: Frame, signal?: AbortSignal): Promise<number> {
  const bytes = encodeFrame(msg)
  await sendEncoded(stream, bytes, signal ? { signal, closed } : { closed })
  return bytes.byteLength
}

// One decoder per stream: a stream that carries several frames keeps what arrived past the last one.
const decoders = new WeakMap<Stream, FrameDecoder>()

/**
 * Reads the next frame of at most `maxBytes`, or null if the stream ends cleanly first; past
 * `timeoutMs` the stream is aborted with JobTimeoutError. A `budget` bounds what the peer's partial
 * frames may hold (the first call on a stream sets it), given back when the stream closes.
 */
export async function nextFrame(
  stream: Stream,
  maxBytes: number,
  timeoutMs: number,
  budget?: ByteBudget,
): Promise<Frame | null> {
  let decoder = decoders.get(stream)
  if (decoder == null || decoder.maxFrameBytes !== maxBytes) {
    decoder?.dispose()
    const d = new FrameDecoder(maxBytes, undefined, budget)
    if (budget) stream.addEventListener('close', () => d.dispose(), { once: true })
    decoder = d
    decoders.set(stream, decoder)
  }
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new JobTimeoutError(`no frame within ${timeoutMs} ms`)
      stream.abort(err)
      reject(err)
    }, timeoutMs)
  })
  try {
    return await Promise.race([readFrame(stream, decoder), timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Nothing of a further frame has arrived on `stream`: it can carry the next exchange. */
export function quiet(stream: Stream): boolean {
  const d = decoders.get(stream)
  return d == null || (d.idle && d.queue.length === 0)
}
