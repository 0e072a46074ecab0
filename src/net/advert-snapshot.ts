/**
 * A newcomer's first view of the swarm: the relay's latest advert of every peer
 * (`/peer-compute/adverts/1.0.0`, node/relay/advert-store.ts). The relay is as untrusted as any
 * peer: the frame is bounded here, and each advert is opened (shape and its own peer's signature)
 * by the caller before use, as gossip is.
 */
import type { Connection } from '@libp2p/interface'
import { MalformedFrameError } from '../shared/errors.ts'
import { ADVERTS_PROTOCOL } from '../shared/protocol.ts'
import { MAX_ADVERT_BYTES } from './advert.ts'
import { FrameDecoder, readFrame } from './frame.ts'

/** The relay's snapshot frame may be this large (its own cap is 8 MiB of adverts). */
const MAX_SNAPSHOT_FRAME_BYTES = 9 * 1024 * 1024
/** Adverts taken from one snapshot at most. */
export const MAX_SNAPSHOT_ADVERTS = 20_000

/** The adverts a relay holds, unopened; rejects a malformed answer, a timeout or a refusal. */
export async function fetchAdvertSnapshot(conn: Connection, signal: AbortSignal): Promise<Uint8Array[]> {
  const stream = await conn.newStream(ADVERTS_PROTOCOL, { signal })
  const onAbort = () => stream.abort(new Error('advert snapshot timed out'))
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    const frame = await readFrame(stream, new FrameDecoder(MAX_SNAPSHOT_FRAME_BYTES))
    const adverts = frame?.t === 'adverts' ? frame.adverts : undefined
    if (!Array.isArray(adverts) || adverts.length > MAX_SNAPSHOT_ADVERTS) {
      throw new MalformedFrameError('not an advert snapshot')
    }
    // Wrong-typed or oversized entries are skipped, not fatal: each advert stands on its own signature.
    return adverts.filter((a): a is Uint8Array => a instanceof Uint8Array && a.byteLength <= MAX_ADVERT_BYTES)
  } finally {
    signal.removeEventListener('abort', onAbort)
    await stream.close().catch(() => stream.abort(new Error('close')))
  }
}
