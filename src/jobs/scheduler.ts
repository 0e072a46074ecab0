/** Chooses a contributor for a job from the advertised peers we hold a direct connection to. */
import type { KnownPeer } from '../net/discovery.ts'

const STALE_ADVERT_MS = 12_000
/**
 * An advert seen within this long after one of our jobs on that peer ended may still count it: the
 * advertised busy count is a 0.5 s average (about 0.7 s to fall to free), published up to 0.5 s late.
 */
const ADVERT_LAG_MS = 2_000

export interface PeerDirectory {
  peers(): KnownPeer[]
}

export interface PickOptions {
  /** Reputation gate: peers it refuses are never chosen. */
  accept?(peer: string): boolean
  /** Prefer peers in the same homogeneous class as these (for exact comparison). */
  sameClassAs?: string[]
}

/** Homogeneous class, as BOINC's hr_class: adapter class + likely execution provider + ORT version. */
export function peerClass(p: KnownPeer): string {
  const a = p.advert
  const ep = a.eps.includes('webgpu') && !a.adapter.includes('fallback') ? 'webgpu' : 'wasm'
  return `${a.adapter}|${ep}|${a.ort}`
}

export interface Scheduler {
  /** The best candidate for `model`, skipping `exclude`; undefined when nobody can take it now. */
  pick(model: string, exclude: ReadonlySet<string>, opts?: PickOptions): KnownPeer | undefined
  /**
   * Tracks our own in-flight jobs per peer, so we do not overfill a peer between adverts. `done(held)`:
   * whether the job held a slot there (a 'busy' refusal did not, so it says nothing of later adverts).
   */
  begin(peer: string): (held?: boolean) => void
  inflight(peer: string): number
  /**
   * Slots free now across direct contributors that `accept` allows (the reputation gate), for any
   * model: how many queued jobs a freed slot is worth waking.
   */
  freeSlots(accept?: (peer: string) => boolean): number
  /** Fires 'release' when one of our jobs on some peer ends, freeing capacity. */
  events: EventTarget
}

export function createScheduler(dir: PeerDirectory, selfId: string): Scheduler {
  const inflight = new Map<string, number>()
  const lastEnded = new Map<string, number>()
  const events = new EventTarget()
  const ours = (id: string) => inflight.get(id) ?? 0

  const free = (p: KnownPeer) => {
    const a = p.advert
    if (!a.contributing || a.eps.length === 0) return 0
    // A peer advertising no free slot we are not using is busy with someone else's work, unless
    // the advert is stale (adverts stop when the relay goes) or may still count our own last jobs
    // (slot adverts are throttled): then a 'busy' reply will tell.
    const busyElsewhere =
      a.slots === 0 &&
      ours(p.id) === 0 &&
      Date.now() - p.seenAt < STALE_ADVERT_MS &&
      p.seenAt - (lastEnded.get(p.id) ?? 0) > ADVERT_LAG_MS
    if (busyElsewhere) return 0
    return a.maxSlots - ours(p.id)
  }

  /** A peer a job may go to at all (not us, direct, past the reputation gate), free slots aside. */
  const open = (p: KnownPeer, accept?: (peer: string) => boolean) =>
    p.id !== selfId && p.direct && (accept?.(p.id) ?? true)

  return {
    pick(model, exclude, opts = {}) {
      const peers = dir.peers()
      const classes = new Set(peers.filter((p) => opts.sameClassAs?.includes(p.id)).map((p) => peerClass(p)))
      const ranked = peers
        .filter((p) => !exclude.has(p.id) && free(p) > 0 && open(p, opts.accept))
        .map((p) => ({
          p,
          same: classes.size === 0 || classes.has(peerClass(p)) ? 1 : 0,
          cached: p.advert.models.includes(model) ? 1 : 0,
          free: free(p),
          speed: p.advert.benchUs > 0 ? p.advert.benchUs : Number.MAX_SAFE_INTEGER,
          tie: Math.random(),
        }))
        .sort(
          (a, b) =>
            b.same - a.same || b.cached - a.cached || b.free - a.free || a.speed - b.speed || a.tie - b.tie,
        )
      return ranked[0]?.p
    },
    begin(peer) {
      inflight.set(peer, ours(peer) + 1)
      let done = false
      return (held = true) => {
        if (done) return
        done = true
        if (held) lastEnded.set(peer, Date.now())
        const n = ours(peer) - 1
        if (n > 0) inflight.set(peer, n)
        else inflight.delete(peer)
        events.dispatchEvent(new Event('release'))
      }
    },
    inflight: ours,
    freeSlots: (accept) => dir.peers().reduce((n, p) => n + (open(p, accept) ? Math.max(0, free(p)) : 0), 0),
    events,
  }
}
