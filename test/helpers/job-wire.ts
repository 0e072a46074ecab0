/** Job-protocol wire helpers for tests: what a requester or a hostile peer does by hand. */
import type { Stream } from '@libp2p/interface'
import {
  type CheckedJobRequest,
  type JobMessage,
  MAX_REJECT_BYTES,
  MAX_REQUEST_BYTES,
  MAX_RESULT_BYTES,
  parseJobRequest,
  startJobChecks,
} from '../../src/jobs/messages.ts'
import { nextFrame } from '../../src/jobs/stream-io.ts'
import { encodeFrame, type Frame } from '../../src/net/frame.ts'
import { MalformedFrameError } from '../../src/shared/errors.ts'
import type { TensorLimits } from '../../src/shared/tensor-codec.ts'

/** Frame size limit per message type, as the peers' decoders apply them. */
const MAX_FRAME_BYTES: Record<JobMessage['t'], number> = {
  job: MAX_REQUEST_BYTES,
  result: MAX_RESULT_BYTES,
  reject: MAX_REJECT_BYTES,
}

/** Encodes a message, enforcing its type's size limit (FrameTooLargeError). */
export const encodeMessage = (msg: JobMessage): Uint8Array => encodeFrame(msg, MAX_FRAME_BYTES[msg.t])

/** A request checked to the end, as the contributor does: rejects (never throws) with the first failed check. */
export async function checkJobRequest(frame: Frame, limits?: TensorLimits): Promise<CheckedJobRequest> {
  return startJobChecks(parseJobRequest(frame), limits).checked
}

/** Reads exactly one frame of at most `maxBytes`; the stream closing first is a MalformedFrameError. */
export async function recvFrame(stream: Stream, maxBytes: number, timeoutMs: number): Promise<Frame> {
  const frame = await nextFrame(stream, maxBytes, timeoutMs)
  if (frame == null) throw new MalformedFrameError('stream ended before a complete frame')
  return frame
}
