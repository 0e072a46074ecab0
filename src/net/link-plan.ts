/**
 * Which peers to hold direct WebRTC links to, within a budget: the rest of the swarm stays known
 * through adverts (gossipsub over the relays) and is linked on demand. A full mesh does not scale:
 * every link is an RTCPeerConnection (Chromium allows about 500 per tab) and costs CPU.
 */

/** What the planner needs to know of one known peer. */
export interface LinkCandidate {
  id: string
  contributing: boolean
  /** Free job slots it advertises. */
  free: number
  /** Model CIDs it advertises as cached. */
  models: readonly string[]
  firstSeenAt: number
  /** A direct link is up (either side dialled it). */
  linked: boolean
  /** We dialled that link: only those are ours to close. */
  outbound: boolean
  /** ms since the link last carried a stream (0 while one is open). */
  idleMs: number
}

export interface LinkPlanOptions {
  /** Links we dial at most (default 32). */
  budget: number
  /** Links kept warm with no demand, so a first job does not wait for a dial (default budget/4). */
  warm: number
  /** Models we submitted (or fetched) lately: peers that hold them rank first, and the whole budget opens. */
  wanted: ReadonlySet<string>
  /** Our links (both ways) past which idle ones are closed, whoever dialled them (default 2 × budget). */
  ceiling: number
  /** A link this idle may be closed to make room (default 60 s). */
  idleCloseMs: number
}

export const LINK_BUDGET = 32
export const IDLE_CLOSE_MS = 60_000

export function linkPlanDefaults(budget = LINK_BUDGET): Omit<LinkPlanOptions, 'wanted'> {
  return {
    budget,
    warm: Math.max(1, Math.floor(budget / 4)),
    ceiling: 2 * budget,
    idleCloseMs: IDLE_CLOSE_MS,
  }
}

/**
 * Peers to dial and links to close. Contributors with a wanted model cached rank first, then ones
 * with free slots; a held link wins ties, so links do not churn between equals.
 */
export function planLinks(
  peers: readonly LinkCandidate[],
  o: LinkPlanOptions,
): { dial: string[]; close: string[] } {
  const score = (p: LinkCandidate) =>
    (p.models.some((m) => o.wanted.has(m)) ? 4 : 0) +
    (p.contributing ? 2 : 0) +
    (p.free > 0 ? 1 : 0) +
    (p.linked ? 0.5 : 0)
  const target = o.wanted.size > 0 ? o.budget : Math.min(o.warm, o.budget)
  const ranked = [...peers].sort(
    (a, b) => score(b) - score(a) || a.firstSeenAt - b.firstSeenAt || (a.id < b.id ? -1 : 1),
  )
  const chosen = new Set(ranked.slice(0, target).map((p) => p.id))
  const dial = ranked.filter((p) => chosen.has(p.id) && !p.linked).map((p) => p.id)
  const idle = (p: LinkCandidate) => p.linked && p.idleMs >= o.idleCloseMs
  // Ours past the target, least useful first; then anyone's past the ceiling, idlest first.
  const ours = ranked.filter((p) => p.outbound && p.linked).length
  const close = ranked
    .filter((p) => p.outbound && !chosen.has(p.id) && idle(p))
    .reverse()
    .slice(0, Math.max(0, ours + dial.length - target))
    .map((p) => p.id)
  const linked = peers.filter((p) => p.linked).length - close.length
  const spare = peers
    .filter((p) => idle(p) && !chosen.has(p.id) && !close.includes(p.id))
    .sort((a, b) => b.idleMs - a.idleMs)
    .slice(0, Math.max(0, linked - o.ceiling))
    .map((p) => p.id)
  return { dial, close: [...close, ...spare] }
}
