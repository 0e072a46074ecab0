/**
 * The relay's latest advert of each peer, served to newcomers on `/peer-compute/adverts/1.0.0`: a
 * peer that joins reads the swarm from its relay at once, so the swarm need not re-advertise to
 * every newcomer (N adverts per join, each checked by N peers). Adverts are kept as the signed bytes
 * the relay forwarded; the newcomer checks every signature itself, as it does for gossip.
 */
import type { Libp2p, Stream } from '@libp2p/interface'
import { encodeFrame, sendEncoded } from '../../src/net/frame.ts'
import { ADVERTS_PROTOCOL } from '../../src/shared/protocol.ts'

/** A snapshot frame's adverts, newest first, fit in this many bytes (about 10,000 typical adverts). */
export const MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024

export interface AdvertStoreOptions {
  /** Peers kept at most; the stalest is forgotten first. Default 10,000. */
  maxPeers?: number
  /** An advert older than this is not served (peers repeat theirs every 15 s). Default 45 s. */
  ttlMs?: number
  now?: () => number
}

export interface AdvertStore {
  /** The advert `data` of `peer`, ordered by its [ts, seq]: kept unless an newer one is held. */
  put(peer: string, data: Uint8Array, order: readonly [number, number]): void
  /** Fresh adverts, newest first, within MAX_SNAPSHOT_BYTES. */
  snapshot(): Uint8Array[]
  readonly size: number
}

interface Entry {
  data: Uint8Array
  order: readonly [number, number]
  at: number
}

export function createAdvertStore(o: AdvertStoreOptions = {}): AdvertStore {
  const now = o.now ?? Date.now
  const maxPeers = o.maxPeers ?? 10_000
  const ttlMs = o.ttlMs ?? 45_000
  // Insertion order is refresh order: a put moves its peer to the end, so the first is the stalest.
  const byPeer = new Map<string, Entry>()
  return {
    put(peer, data, order) {
      const had = byPeer.get(peer)
      if (had && (had.order[0] > order[0] || (had.order[0] === order[0] && had.order[1] >= order[1]))) return
      byPeer.delete(peer)
      byPeer.set(peer, { data, order, at: now() })
      if (byPeer.size > maxPeers) byPeer.delete(byPeer.keys().next().value!)
    },
    snapshot() {
      const fresh = now() - ttlMs
      const out: Uint8Array[] = []
      let bytes = 0
      for (const e of [...byPeer.values()].reverse()) {
        if (e.at < fresh) break
        if (bytes + e.data.byteLength + 16 > MAX_SNAPSHOT_BYTES) break
        bytes += e.data.byteLength + 16
        out.push(e.data)
      }
      return out
    },
    get size() {
      return byPeer.size
    },
  }
}

/** Answers each adverts stream with one `{t: 'adverts', adverts}` frame, then closes it. */
export async function serveAdvertSnapshots(node: Libp2p, store: AdvertStore): Promise<void> {
  const serve = async (stream: Stream) => {
    try {
      const bytes = encodeFrame({ t: 'adverts', adverts: store.snapshot() })
      const signal = AbortSignal.timeout(10_000)
      await sendEncoded(stream, bytes, {
        signal,
        closed: () => new Error('closed before the snapshot was sent'),
      })
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err as Error)
    }
  }
  // A newcomer asks once per relay connection; a few at once bound what a flood of asks costs.
  await node.handle(ADVERTS_PROTOCOL, (stream) => void serve(stream), { maxInboundStreams: 2 })
}
