/**
 * The relay's latest advert of each peer, served to newcomers on `/peer-compute/adverts/1.0.0`: a
 * peer that joins reads the swarm from its relay at once, so the swarm need not re-advertise to
 * every newcomer (N adverts per join, each checked by N peers). Adverts are kept as the signed bytes
 * the relay forwarded; the newcomer checks every signature itself, as it does for gossip.
 */
import type { Connection, Libp2p, Stream } from '@libp2p/interface'
import { newerAdvert } from '../../src/net/advert.ts'
import { encodeFrame, sendEncoded } from '../../src/net/frame.ts'
import { ADVERTS_PROTOCOL } from '../../src/shared/protocol.ts'

/** A snapshot frame's adverts, newest first, fit in this many bytes (about 10,000 typical adverts). */
export const MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024
/** Snapshots being sent at once, for all peers together. */
const MAX_SENDING = 8

export interface AdvertStoreOptions {
  /** Peers kept at most; the stalest is forgotten first. Default 10,000. */
  maxPeers?: number
  /** Bytes of adverts kept at most (each ≤ 16 KiB once opened); the stalest go first. Default 32 MiB. */
  maxBytes?: number
  /** An advert older than this is not served and is forgotten (peers repeat theirs every 15 s). Default 45 s. */
  ttlMs?: number
  now?: () => number
}

export interface AdvertStore {
  /** The advert `data` of `peer`, ordered by its [ts, seq]: kept unless a newer one is held and fresh. */
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
  const maxBytes = o.maxBytes ?? 32 * 1024 * 1024
  const ttlMs = o.ttlMs ?? 45_000
  // Insertion order is refresh order: a put moves its peer to the end, so the first is the stalest.
  const byPeer = new Map<string, Entry>()
  let bytes = 0
  const drop = (peer: string) => {
    bytes -= byPeer.get(peer)?.data.byteLength ?? 0
    byPeer.delete(peer)
  }
  const stalest = () => byPeer.entries().next().value
  return {
    put(peer, data, order) {
      const had = byPeer.get(peer)
      // A peer whose clock stepped back is taken again once its held advert has gone stale.
      if (had && !newerAdvert(order, had.order) && had.at >= now() - ttlMs) return
      drop(peer)
      // A copy: the bytes may be a view of a whole gossipsub message, many times the advert's size.
      byPeer.set(peer, { data: data.slice(), order, at: now() })
      bytes += data.byteLength
      for (
        let s = stalest();
        s && (byPeer.size > maxPeers || bytes > maxBytes || s[1].at < now() - ttlMs);
        s = stalest()
      )
        drop(s[0])
    },
    snapshot() {
      const fresh = now() - ttlMs
      const out: Uint8Array[] = []
      let size = 0
      for (const e of [...byPeer.values()].reverse()) {
        if (e.at < fresh) break
        if (size + e.data.byteLength + 16 > MAX_SNAPSHOT_BYTES) break
        size += e.data.byteLength + 16
        out.push(e.data)
      }
      return out
    },
    get size() {
      return byPeer.size
    },
  }
}

/**
 * Answers an adverts stream with one `{t: 'adverts', adverts}` frame, then closes it: once per
 * connection (a newcomer asks once per relay connection), and the frame encoded at most once a second.
 */
export async function serveAdvertSnapshots(node: Libp2p, store: AdvertStore): Promise<void> {
  const asked = new WeakSet<Connection>()
  let cached: { bytes: Uint8Array; at: number } | undefined
  const frame = () => {
    if (!cached || Date.now() - cached.at > 1000)
      cached = { bytes: encodeFrame({ t: 'adverts', adverts: store.snapshot() }), at: Date.now() }
    return cached.bytes
  }
  let sending = 0
  const serve = async (stream: Stream, connection: Connection) => {
    let counted = false
    try {
      if (asked.has(connection)) throw new Error('one advert snapshot per connection')
      // Up to 8 MiB each to anyone who connects: a few at a time, the rest refused (the peer learns
      // the swarm from gossip instead).
      if (sending >= MAX_SENDING) throw new Error('too many advert snapshots in flight')
      asked.add(connection)
      sending++
      counted = true
      const signal = AbortSignal.timeout(30_000)
      await sendEncoded(stream, frame(), {
        signal,
        closed: () => new Error('closed before the snapshot was sent'),
      })
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err as Error)
    } finally {
      if (counted) sending--
    }
  }
  await node.handle(ADVERTS_PROTOCOL, (stream, connection) => void serve(stream, connection), {
    maxInboundStreams: 2,
  })
}
