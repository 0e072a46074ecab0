/** Frame I/O over a libp2p v3 message stream, honouring backpressure and a read deadline. */
import type { Stream } from '@libp2p/interface'
import { JobTimeoutError, MalformedFrameError } from '../shared/errors.ts'
import { encodeFrame, type Frame, FrameDecoder, readFrame } from './frame.ts'

export async function sendFrame(stream: Stream, msg: Frame, signal?: AbortSignal): Promise<void> {
  if (!stream.send(encodeFrame(msg))) await stream.onDrain(signal ? { signal } : {})
}

/** Reads exactly one frame of at most `maxBytes`; the stream closing first is a MalformedFrameError. */
export async function recvFrame(stream: Stream, maxBytes: number, timeoutMs: number): Promise<Frame> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new JobTimeoutError(`no frame within ${timeoutMs} ms`)
      stream.abort(err)
      reject(err)
    }, timeoutMs)
  })
  try {
    const frame = await Promise.race([readFrame(stream, new FrameDecoder(maxBytes)), timeout])
    if (frame == null) throw new MalformedFrameError('stream ended before a complete frame')
    return frame
  } finally {
    clearTimeout(timer)
  }
}
