/**
 * Bounds on what remote peers may make this node hold: concurrent inbound streams per peer and
 * protocol, and bytes in partial frames per peer and in total. A stream over a bound is refused at
 * once; a frame that would pass a byte bound fails its stream. Honest peers never come near them.
 */
import type { ByteBudget } from './frame.ts'

export interface InboundLimits {
  /** Concurrent inbound streams one peer may hold open on this protocol. */
  streamsPerPeer(): number
  /** Bytes one peer's partial frames may hold across its streams. */
  bytesPerPeer: number
  /** Bytes all peers' partial frames may hold together. */
  bytesTotal: number
}

export interface InboundGuard {
  /** A stream slot for `peer`: its release, or undefined when the peer is at its bound. */
  open(peer: string): (() => void) | undefined
  /** The byte budget that `peer`'s partial frames draw on. */
  budget(peer: string): ByteBudget
  /** Streams and partial-frame bytes held now, per peer and in total (for tests and the UI). */
  held(peer?: string): { streams: number; bytes: number }
}

export function createInboundGuard(limits: InboundLimits): InboundGuard {
  const peers = new Map<string, { streams: number; bytes: number }>()
  let total = 0
  const entry = (peer: string) => {
    const e = peers.get(peer) ?? { streams: 0, bytes: 0 }
    peers.set(peer, e)
    return e
  }
  const tidy = (peer: string, e: { streams: number; bytes: number }) => {
    if (e.streams === 0 && e.bytes === 0) peers.delete(peer)
  }
  return {
    open(peer) {
      const e = entry(peer)
      if (e.streams >= limits.streamsPerPeer()) {
        tidy(peer, e)
        return undefined
      }
      e.streams++
      let open = true
      return () => {
        if (!open) return
        open = false
        e.streams--
        tidy(peer, e)
      }
    },
    budget(peer) {
      return {
        take(n) {
          const e = entry(peer)
          if (e.bytes + n > limits.bytesPerPeer || total + n > limits.bytesTotal) {
            tidy(peer, e)
            return false
          }
          e.bytes += n
          total += n
          return true
        },
        give(n) {
          const e = peers.get(peer)
          if (!e || n <= 0) return
          const k = Math.min(n, e.bytes)
          e.bytes -= k
          total -= k
          tidy(peer, e)
        },
      }
    },
    held(peer) {
      if (peer != null) return { ...(peers.get(peer) ?? { streams: 0, bytes: 0 }) }
      let streams = 0
      for (const e of peers.values()) streams += e.streams
      return { streams, bytes: total }
    },
  }
}
