/**
 * Discovery's direct WebRTC links (`discovery.ts`): dials the known peers the link plan
 * (src/net/link-plan.ts) wants, closes the idle ones it does not, and watches each link's ICE state.
 */
import type { Connection, Logger } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { raceSignal } from 'race-signal'
import type { KnownPeer } from './advert-intake.ts'
import { isDirect, isProven, linkPath, markProven, peerConnectionOf } from './link.ts'
import { type LinkCandidate, type LinkPlanOptions, planLinks } from './link-plan.ts'
import { type BrowserNode, directConnection } from './node.ts'

/** A link whose ICE transport has not connected this long after it opened is closed and dialled again. */
export const LINK_CONNECT_MS = 10_000

/** A link ICE reports disconnected this long is closed: its jobs go elsewhere, then it is redialled. */
export const LINK_DISCONNECTED_MS = 3_000

/**
 * A link ICE-connected this long over which the far side has answered nothing (identify, src/net/link.ts)
 * is open on our side only: it is closed and dialled again. Identify answers in milliseconds on a
 * working link and gives up after 5 s: past that, a loaded but honest far side is not waited for.
 */
export const LINK_PROVE_MS = 6_000
/** The second identify a link not yet answered gets before it is closed. */
const IDENTIFY_AGAIN_MS = 3_000

const PLAN_GAP_MS = 250

/** A redial (src/jobs/dispatch.ts, for a peer a job was sent to) gets this long, dial and identify. */
export const REDIAL_MS = 10_000

/**
 * A contributor counts as unreachable (noPath) after this many failed attempts in a row: one dial
 * can time out on a loaded peer, or on one that still holds a dead link from our last session.
 */
export const NO_PATH_AFTER = 2

/**
 * The planner's wait before dialling a peer again after its n-th failure in a row (n ≥ NO_PATH_AFTER),
 * doubling to RETRY_MAX_MS: an advert outlives its peer by up to three intervals, and each dial of a
 * gone peer is a relay request; nor may unreachable peers hold the link budget from reachable ones.
 */
export const RETRY_BASE_MS = 2_000
/** Short of the advert's 45 s life: a contributor briefly too loaded to answer is back in seconds. */
export const RETRY_MAX_MS = 8_000

/** A model we submitted counts as wanted (more links, to its holders first) this long. */
const WANT_MS = 5 * 60_000

export interface LinksOptions {
  node: BrowserNode
  log: Logger
  /** The known peers, owned by discovery: read, and their link fields (direct, path, linkError) set. */
  peers: Map<string, KnownPeer>
  isBlocked(id: string): boolean
  /** Something about a peer's link changed. */
  changed(): void
  /** The lower PeerId dials first; the other side dials after this grace period. */
  grace: number
  budget: Omit<LinkPlanOptions, 'wanted'>
}

export interface Links {
  /** Dials the links the plan wants and closes the ones it does not. */
  plan(): void
  /** Plans within PLAN_GAP_MS. */
  planSoon(): void
  /** Re-reads `id`'s direct link (up or not, its path). */
  refresh(id: string): void
  /** Many peers' state at once, one 'change' for all. */
  refreshMany(ids: string[]): void
  /** Watches a new connection's ICE and SCTP state, and that it is answered, if it is a WebRTC link. */
  watch(conn: Connection): void
  want(model: string): void
  redial(id: string, signal: AbortSignal): Promise<void>
  noPath(): string | undefined
  stop(): void
}

interface LinkState {
  o: LinksOptions
  self: string
  dialing: Set<string>
  redialing: Map<string, Promise<void>>
  wanted: Map<string, number> // model → when last wanted
  activeAt: Map<string, number> // peer → when its link last carried a job or model stream
  watched: WeakSet<object>
  planTimer: ReturnType<typeof setTimeout> | undefined
  // Stopped, it schedules nothing: a job ending as the node stops must not re-plan after it.
  stopped: boolean
}

export function createLinks(o: LinksOptions): Links {
  const s: LinkState = {
    o,
    self: o.node.peerId.toString(),
    dialing: new Set(),
    redialing: new Map(),
    wanted: new Map(),
    activeAt: new Map(),
    watched: new WeakSet(),
    planTimer: undefined,
    stopped: false,
  }
  return {
    plan: () => plan(s),
    // Adverts of known peers arrive often (free slots change with every job): they re-plan at most this often.
    planSoon() {
      if (s.stopped) return
      s.planTimer ??= setTimeout(() => plan(s), PLAN_GAP_MS)
    },
    refresh: (id) => refresh(s, id),
    refreshMany: (ids) => refreshMany(s, ids),
    watch: (conn) => watch(s, conn),
    want(model) {
      const fresh = !s.wanted.has(model)
      s.wanted.set(model, Date.now())
      if (fresh) plan(s)
    },
    redial: (id, signal) => redial(s, id, signal),
    noPath: () => noPath(s),
    stop() {
      s.stopped = true
      clearTimeout(s.planTimer)
    },
  }
}

function plan(s: LinkState) {
  clearTimeout(s.planTimer)
  s.planTimer = undefined
  if (s.stopped) return
  const { log, node, peers } = s.o
  const now = Date.now()
  for (const [m, at] of s.wanted) if (now - at > WANT_MS) s.wanted.delete(m)
  // One pass over the connections, not a PeerId parse and lookup per known peer.
  const links = new Map<string, Connection>()
  for (const c of node.getConnections()) if (isDirect(c)) links.set(c.remotePeer.toString(), c)
  const { dial: toDial, close } = planLinks(candidates(s, links, now), {
    ...s.o.budget,
    wanted: new Set(s.wanted.keys()),
  })
  for (const id of close) {
    log('closing the idle link to %s (link budget)', id)
    void links
      .get(id)
      ?.close()
      .catch(() => {})
  }
  for (const id of toDial) {
    const p = peers.get(id)
    if (p) void dial(s, p)
  }
}

/** The known peers as the planner sees them; notes which links carry streams as it goes. */
function candidates(s: LinkState, links: Map<string, Connection>, now: number): LinkCandidate[] {
  const { activeAt } = s
  for (const id of activeAt.keys()) if (!links.has(id)) activeAt.delete(id) // a new link starts fresh
  // A peer waiting out its retry is no candidate: it neither holds the budget nor is dialled.
  return [...s.o.peers.values()]
    .filter((p) => !s.o.isBlocked(p.id) && (links.has(p.id) || (p.retryAt ?? 0) <= now))
    .map((p) => {
      const link = links.get(p.id)
      const busy = link?.streams.some((st) => st.protocol?.startsWith('/peer-compute/')) ?? false
      if (link && (busy || !activeAt.has(p.id))) activeAt.set(p.id, now)
      return {
        id: p.id,
        contributing: p.advert.contributing && p.advert.eps.length > 0,
        free: p.advert.slots,
        models: p.advert.models,
        firstSeenAt: p.firstSeenAt,
        linked: link != null,
        outbound: link?.direction === 'outbound',
        idleMs: link ? now - (activeAt.get(p.id) ?? now) : 0,
      }
    })
}

async function dial(s: LinkState, p: KnownPeer) {
  const { node, log } = s.o
  if (p.direct || s.dialing.has(p.id) || s.o.isBlocked(p.id)) return
  if (directConnection(node, peerIdFromString(p.id))) return
  if (s.self > p.id && Date.now() - p.firstSeenAt < s.o.grace) return
  s.dialing.add(p.id)
  const errors: string[] = []
  try {
    for (const addr of p.advert.addrs) {
      try {
        await node.dial(multiaddr(addr), { signal: AbortSignal.timeout(10_000) })
        errors.length = 0
        break
      } catch (err) {
        log('dial %s failed: %s', addr, (err as Error).message)
        errors.push((err as Error).message.slice(0, 200))
      }
    }
  } finally {
    s.dialing.delete(p.id)
    // A dial can resolve with a link still connecting (the peer's own, reused): the last error
    // stands until a link connects (refresh) or the watch closes it with a reason of its own.
    if (errors.length > 0) failed(s, p.id, errors.join('; '))
    refresh(s, p.id)
  }
}

/** Notes a failed attempt to link `id`; short of NO_PATH_AFTER, the next is planned now. */
function failed(s: LinkState, id: string, why: string) {
  const known = s.o.peers.get(id)
  if (known == null) return
  known.linkError = why
  const n = (known.linkFailures ?? 0) + 1
  known.linkFailures = n
  if (n < NO_PATH_AFTER) {
    if (!s.stopped) s.planTimer ??= setTimeout(() => plan(s), PLAN_GAP_MS)
  } else {
    known.retryAt = Date.now() + Math.min(RETRY_BASE_MS * 2 ** (n - NO_PATH_AFTER), RETRY_MAX_MS)
  }
}

function refresh(s: LinkState, id: string, notify = true) {
  const { peers, changed } = s.o
  const p = peers.get(id)
  if (p == null) return
  const link = directConnection(s.o.node, peerIdFromString(id))
  p.direct = link != null
  if (link == null) delete p.path
  else {
    delete p.linkError
    delete p.linkFailures
    delete p.retryAt
    void linkPath(link).then((path) => {
      if (path && p.path !== path && peers.get(id) === p) {
        p.path = path
        changed()
      }
    })
  }
  if (notify) changed()
}

/** refresh for many peers at once (a relay's snapshot): peers with no connection cost no lookup. */
function refreshMany(s: LinkState, ids: string[]) {
  const connected = new Set(s.o.node.getConnections().map((c) => c.remotePeer.toString()))
  for (const id of ids) {
    const p = s.o.peers.get(id)
    if (p && !connected.has(id)) {
      p.direct = false
      delete p.path
    } else refresh(s, id, false)
  }
  if (ids.length > 0) s.o.changed()
}

// Watch each WebRTC link's ICE state: direct only once connected, closed when it never gets there,
// when the far side never answers over it, or when the far side has closed its SCTP association.
function watch(s: LinkState, conn: Connection) {
  const pc = peerConnectionOf(conn)
  if (pc == null || s.watched.has(pc)) return
  s.watched.add(pc)
  const id = conn.remotePeer.toString()
  let lost: ReturnType<typeof setTimeout> | undefined
  let unanswered: ReturnType<typeof setTimeout> | undefined
  const close = (why: string) => {
    clearTimeout(unanswered)
    s.o.log('closing the link to %s: %s', id, why)
    failed(s, id, why)
    conn.abort(new Error(why))
  }
  // The far side may never have got this link (src/net/link.ts): dial it again soon, from here.
  // Identify starts when the connection opens, which on the answering side is before ICE connects:
  // over a slow TURN allocation it may have given up already, so it is asked once more first.
  const prove = () => {
    unanswered ??= setTimeout(async () => {
      if (isProven(conn) || conn.status !== 'open') return
      const asked = await s.o.node.services.identify
        ?.identify(conn, { signal: AbortSignal.timeout(IDENTIFY_AGAIN_MS) })
        .then(
          () => true,
          () => false,
        )
      if (asked) markProven(conn)
      if (isProven(conn) || conn.status !== 'open') return refresh(s, id)
      close(`nothing answered over it within ${LINK_PROVE_MS + IDENTIFY_AGAIN_MS} ms of connecting`)
    }, LINK_PROVE_MS)
  }
  const never = setTimeout(() => {
    if (pc.connectionState !== 'connected') close(`ICE did not connect within ${LINK_CONNECT_MS} ms`)
  }, LINK_CONNECT_MS)
  // A dialled link opens already connected: no event clears the timer, and a blip in its 10th
  // second would close it as never connected, without the disconnect grace.
  if (pc.connectionState === 'connected') {
    clearTimeout(never)
    prove()
  }
  // ICE notices a far side gone only when consent checks fail (seconds); its SCTP abort says so at once.
  pc.sctp?.addEventListener?.('statechange', () => {
    if (pc.sctp?.state === 'closed' && conn.status === 'open') close('the far side closed it')
    refresh(s, id)
  })
  pc.addEventListener('connectionstatechange', () => {
    const state = pc.connectionState
    if (state === 'connected') {
      clearTimeout(never)
      clearTimeout(lost)
      lost = undefined
      prove()
    } else if (state === 'disconnected') {
      lost ??= setTimeout(
        () => close(`ICE disconnected for ${LINK_DISCONNECTED_MS} ms`),
        LINK_DISCONNECTED_MS,
      )
    } else if (state === 'failed' || state === 'closed') {
      clearTimeout(never)
      clearTimeout(lost)
      clearTimeout(unanswered)
      if (state === 'failed') close('ICE failed')
    }
    refresh(s, id)
  })
}

/**
 * One redial per peer at a time: the jobs of a batch caught on one lost link share it, so it is
 * bounded by its own REDIAL_MS, not by the job that asked first; each caller stops waiting at its own abort.
 */
function redial(s: LinkState, id: string, signal: AbortSignal): Promise<void> {
  if (signal.aborted || s.stopped || s.o.isBlocked(id)) return Promise.resolve()
  let p = s.redialing.get(id)
  if (p == null) {
    p = redialOnce(s, id).finally(() => s.redialing.delete(id))
    s.redialing.set(id, p)
  }
  return raceSignal(p, signal)
}

async function redialOnce(s: LinkState, id: string) {
  const { node, log } = s.o
  const stale = directConnection(node, peerIdFromString(id))
  await stale?.close().catch(() => stale.abort(new Error('replaced: it could not open streams')))
  const p = s.o.peers.get(id)
  // All addresses together: a peer gone from the network costs its jobs this much, not 10 s each.
  const end = Date.now() + REDIAL_MS
  for (const addr of p?.advert.addrs ?? []) {
    if (Date.now() >= end || s.stopped) break
    try {
      const conn = await node.dial(multiaddr(addr), { signal: AbortSignal.timeout(end - Date.now()) })
      // Its jobs are sent as soon as this resolves: only over a link that is direct by then.
      while (!isDirect(conn) && conn.status === 'open' && Date.now() < end)
        await new Promise((r) => setTimeout(r, 50))
      if (isDirect(conn)) return
    } catch (err) {
      log('redial %s failed: %s', addr, (err as Error).message)
    }
  }
  refresh(s, id)
}

function noPath(s: LinkState): string | undefined {
  const contributors = [...s.o.peers.values()].filter((p) => p.advert.contributing && p.advert.eps.length > 0)
  if (contributors.length === 0) return undefined
  const tried = (p: KnownPeer) => p.linkError != null && (p.linkFailures ?? 0) >= NO_PATH_AFTER
  if (contributors.some((p) => p.direct || s.dialing.has(p.id) || !tried(p))) return undefined
  return `no direct path to any of ${contributors.length} contributor(s): ${contributors[0]!.linkError}`
}
