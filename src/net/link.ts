/**
 * The state of a direct WebRTC link as its RTCPeerConnection sees it. libp2p counts a connection
 * open once its streams can be negotiated, which the answering side reaches before ICE has
 * connected, or before the dialling side has the connection at all; a link is direct only once ICE
 * is connected and the far side has answered over it, and its path is the selected pair's.
 */
import type { Connection } from '@libp2p/interface'
import { WebRTC } from '@multiformats/multiaddr-matcher'

/** host: a LAN or this machine; stun: through NAT by server-reflexive addresses; turn: relayed by TURN. */
export type LinkPath = 'host' | 'stun' | 'turn'

/**
 * The RTCPeerConnection under a libp2p WebRTC connection. It is an internal of @libp2p/webrtc 6
 * (`Connection.maConn.peerConnection`); test/e2e/swarm.test.ts fails if it moves.
 */
export function peerConnectionOf(c: Connection): RTCPeerConnection | undefined {
  const pc = (c as unknown as { maConn?: { peerConnection?: RTCPeerConnection } }).maConn?.peerConnection
  return pc != null && typeof pc.getStats === 'function' ? pc : undefined
}

// Links over which identify has been answered (node.ts marks them on 'peer:identify').
const proven = new WeakSet<Connection>()

/**
 * The far side answered a stream over `c`, so it holds the connection too. A link can open on one
 * side only: @libp2p/webrtc's dialler waits for its 'init' data channel to open, and when the
 * answerer's muxer has already closed that channel the dial hangs until its signal aborts, while
 * the answerer's connection is open and ICE-connected but no stream over it is ever answered.
 */
export function markProven(c: Connection): void {
  proven.add(c)
}

export const isProven = (c: Connection): boolean => proven.has(c)

/**
 * A WebRTC connection that libp2p holds open, whose ICE transport is connected, whose SCTP
 * association is not closed (the far side closed it), and over which the far side has answered.
 */
export function isDirect(c: Connection): boolean {
  if (!WebRTC.matches(c.remoteAddr) || c.status !== 'open' || !proven.has(c)) return false
  const pc = peerConnectionOf(c)
  const state = pc?.connectionState
  return (state == null || state === 'connected') && pc?.sctp?.state !== 'closed'
}

interface CandidateStats {
  candidateType?: string
}

/** The selected candidate pair's path, from getStats(); undefined before ICE has selected one. */
export async function linkPath(c: Connection): Promise<LinkPath | undefined> {
  const pc = peerConnectionOf(c)
  if (pc == null) return undefined
  const stats = await pc.getStats()
  let pairId: string | undefined
  stats.forEach((s: { type: string; selectedCandidatePairId?: string }) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId
  })
  const pair = pairId ? stats.get(pairId) : undefined
  if (pair == null) return undefined
  const local = stats.get(pair.localCandidateId) as CandidateStats | undefined
  const remote = stats.get(pair.remoteCandidateId) as CandidateStats | undefined
  if (local?.candidateType === 'relay' || remote?.candidateType === 'relay') return 'turn'
  // Our side went out through a NAT mapping (reflexive), or the peer signalled its mapped address.
  // A remote peer-reflexive one alone proves nothing: mDNS-hidden host addresses show up as prflx.
  const reflexive = local?.candidateType === 'srflx' || local?.candidateType === 'prflx'
  return reflexive || remote?.candidateType === 'srflx' ? 'stun' : 'host'
}
