/** Swarm view: the swarm's totals, and every known peer with its link path, engine, slots and reputation. */
import type { Peer } from '../peer.ts'
import { renderPeers, renderSwarmTotals } from './render.ts'

export function mountSwarmView(peer: Peer, el: HTMLElement): () => void {
  const refresh = () => {
    const peers = peer.peers()
    renderSwarmTotals(el.querySelector('#swarm-totals')!, peers)
    renderPeers(el.querySelector('#peers')!, peers, peer.reputation)
  }
  peer.events.addEventListener('peers', refresh)
  peer.reputation.events.addEventListener('change', refresh)
  refresh()
  return refresh
}
