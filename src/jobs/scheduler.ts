/** Chooses a contributor for a job from the advertised peers we hold a direct connection to. */
import type { KnownPeer } from '../net/discovery.ts'

const STALE_ADVERT_MS = 12_000
/**
 * An advert seen within this long after one of our jobs on that peer ended may still count it: the
 * advertised busy count is a 0.5 s average (about 0.7 s to fall to free) taken when it is published.
 */
const ADVERT_LAG_MS = 2_000

/**
 * A peer that refused a job as busy counts as full this long, unless an advert seen since says
 * otherwise: its adverts of fewer free slots may be seconds late (src/net/discovery-publish.ts).
 */
export const BUSY_HOLD_MS = 1_000

/** Results a peer delivered within this long count toward the slots we fill there. */
export const DELIVERY_WINDOW_MS = 60_000
/** Share of picks that ignore the proven-first ranking, so newcomers can build a record. */
export const NEWCOMER_SHARE = 0.1

export interface PeerDirectory {
  peers(): KnownPeer[]
}

export interface PickOptions {
  /** Reputation gate: peers it refuses are never chosen. */
  accept?(peer: string): boolean
  /** Prefer peers in the same homogeneous class as these (for exact comparison). */
  sameClassAs?: string[]
  /** Peers with a record of valid results: ranked above newcomers, but for NEWCOMER_SHARE of picks. */
  proven?(peer: string): boolean
}

/** Homogeneous class, as BOINC's hr_class: adapter class + likely execution provider + ORT version. */
export function peerClass(p: KnownPeer): string {
  const a = p.advert
  const ep =
    a.eps.includes('webgpu') && !a.adapter.includes('fallback')
      ? 'webgpu'
      : a.eps.includes('cuda')
        ? 'cuda'
        : a.eps.includes('cpu')
          ? 'cpu'
          : 'wasm'
  return `${a.adapter}|${ep}|${a.ort}`
}

export interface Scheduler {
  /** The best candidate for `model`, skipping `exclude`; undefined when nobody can take it now. */
  pick(model: string, exclude: ReadonlySet<string>, opts?: PickOptions): KnownPeer | undefined
  /**
   * Tracks our own in-flight jobs per peer, so we do not overfill a peer between adverts. `done(held)`:
   * whether the job held a slot there (a 'busy' refusal did not, so it says nothing of later adverts).
   */
  begin(peer: string): (held?: boolean, delivered?: boolean) => void
  inflight(peer: string): number
  /**
   * Jobs we may have on `peer` at once: its advertised maxSlots, but no more than one plus the
   * results it delivered in the last DELIVERY_WINDOW_MS. An advert is a claim; delivery is evidence.
   */
  slotCap(peer: KnownPeer): number
  /** Contributors a job could go to at all, busy or not: direct, contributing, allowed, not excluded. */
  eligible(exclude: ReadonlySet<string>, accept?: (peer: string) => boolean): number
  /**
   * Slots free now across direct contributors that `accept` allows (the reputation gate), for any
   * model: how many queued jobs a freed slot is worth waking.
   */
  freeSlots(accept?: (peer: string) => boolean): number
  /** The homogeneous class (peerClass) of a known peer; undefined for one we have no advert of. */
  classOf(peer: string): string | undefined
  /** Fires 'release' when one of our jobs on some peer ends, freeing capacity. */
  events: EventTarget
}

/** The scheduler's own record of our jobs per peer, and what their results showed. */
interface SchedulerState {
  dir: PeerDirectory
  selfId: string
  random: () => number
  inflight: Map<string, number>
  lastEnded: Map<string, number>
  busyAt: Map<string, number> // peer → when it last refused one of our jobs as busy
  deliveries: Map<string, number[]> // peer → times of its recent results
  speed: Map<string, number> // peer → smoothed ms per job, as we observed it
  events: EventTarget
}

export function createScheduler(
  dir: PeerDirectory,
  selfId: string,
  random: () => number = Math.random,
): Scheduler {
  const s: SchedulerState = {
    dir,
    selfId,
    random,
    inflight: new Map(),
    lastEnded: new Map(),
    busyAt: new Map(),
    deliveries: new Map(),
    speed: new Map(),
    events: new EventTarget(),
  }
  return {
    classOf(peer) {
      const p = dir.peers().find((k) => k.id === peer)
      return p && peerClass(p)
    },
    pick: (model, exclude, opts = {}) => pick(s, model, exclude, opts),
    begin: (peer) => begin(s, peer),
    inflight: (peer) => ours(s, peer),
    slotCap: (p) => slotCap(s, p),
    eligible: (exclude, accept) =>
      dir
        .peers()
        .filter(
          (p) => !exclude.has(p.id) && open(s, p, accept) && p.advert.contributing && p.advert.eps.length > 0,
        ).length,
    freeSlots: (accept) =>
      dir.peers().reduce((n, p) => n + (open(s, p, accept) ? Math.max(0, free(s, p)) : 0), 0),
    events: s.events,
  }
}

const ours = (s: SchedulerState, id: string) => s.inflight.get(id) ?? 0

function recent(s: SchedulerState, id: string): number {
  const since = Date.now() - DELIVERY_WINDOW_MS
  const list = s.deliveries.get(id)?.filter((t) => t >= since) ?? []
  if (list.length === 0) s.deliveries.delete(id)
  else s.deliveries.set(id, list)
  return list.length
}

const slotCap = (s: SchedulerState, p: KnownPeer) => Math.min(p.advert.maxSlots, 1 + recent(s, p.id))

function free(s: SchedulerState, p: KnownPeer): number {
  const a = p.advert
  if (!a.contributing || a.eps.length === 0) return 0
  // A peer advertising no free slot we are not using is busy with someone else's work, unless
  // the advert is stale (adverts stop when the relay goes) or may still count our own last jobs
  // (slot adverts are throttled): then a 'busy' reply will tell.
  const busyElsewhere =
    a.slots === 0 &&
    ours(s, p.id) === 0 &&
    Date.now() - p.seenAt < STALE_ADVERT_MS &&
    p.seenAt - (s.lastEnded.get(p.id) ?? 0) > ADVERT_LAG_MS
  if (busyElsewhere || refusedSince(s, p)) return 0
  return slotCap(s, p) - ours(s, p.id)
}

/** It said 'busy' to one of our jobs lately, and no advert has come from it since. */
function refusedSince(s: SchedulerState, p: KnownPeer): boolean {
  const at = s.busyAt.get(p.id)
  if (at === undefined) return false
  if (Date.now() - at < BUSY_HOLD_MS && p.seenAt <= at) return true
  s.busyAt.delete(p.id)
  return false
}

/** A peer a job may go to at all (not us, direct, past the reputation gate), free slots aside. */
const open = (s: SchedulerState, p: KnownPeer, accept?: (peer: string) => boolean) =>
  p.id !== s.selfId && p.direct && (accept?.(p.id) ?? true)

function pick(
  s: SchedulerState,
  model: string,
  exclude: ReadonlySet<string>,
  opts: PickOptions,
): KnownPeer | undefined {
  const peers = s.dir.peers()
  const classes = new Set(peers.filter((p) => opts.sameClassAs?.includes(p.id)).map((p) => peerClass(p)))
  const newcomerTurn = s.random() < NEWCOMER_SHARE
  // Advertised benchUs is a claim nobody checks: speed is what we timed ourselves.
  const ranked = peers
    .filter((p) => !exclude.has(p.id) && open(s, p, opts.accept))
    .map((p) => ({ p, free: free(s, p) }))
    .filter((c) => c.free > 0)
    .map(({ p, free }) => ({
      p,
      same: classes.size === 0 || classes.has(peerClass(p)) ? 1 : 0,
      proven: newcomerTurn || (opts.proven?.(p.id) ?? true) ? 1 : 0,
      cached: p.advert.models.includes(model) ? 1 : 0,
      free,
      speed: s.speed.get(p.id) ?? Number.MAX_SAFE_INTEGER,
      tie: s.random(),
    }))
    .sort(
      (a, b) =>
        b.same - a.same ||
        b.proven - a.proven ||
        b.cached - a.cached ||
        b.free - a.free ||
        a.speed - b.speed ||
        a.tie - b.tie,
    )
  return ranked[0]?.p
}

function begin(s: SchedulerState, peer: string): (held?: boolean, delivered?: boolean) => void {
  s.inflight.set(peer, ours(s, peer) + 1)
  const started = Date.now()
  let done = false
  return (held = true, delivered = false) => {
    if (done) return
    done = true
    if (held) s.lastEnded.set(peer, Date.now())
    else s.busyAt.set(peer, Date.now())
    if (delivered) {
      s.deliveries.set(peer, [...(s.deliveries.get(peer) ?? []), Date.now()].slice(-64))
      const ms = Date.now() - started
      s.speed.set(peer, 0.7 * (s.speed.get(peer) ?? ms) + 0.3 * ms)
    }
    const n = ours(s, peer) - 1
    if (n > 0) s.inflight.set(peer, n)
    else s.inflight.delete(peer)
    s.events.dispatchEvent(new Event('release'))
  }
}
