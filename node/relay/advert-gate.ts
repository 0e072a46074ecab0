/**
 * The relay's per-peer advert rate limit: a token bucket per advertising PeerId. An advert over the
 * budget is not simply dropped: the newest one waits until the budget allows and then goes out, and
 * any older one still waiting is dropped. So a peer that bursts loses only the adverts a later one
 * replaces, and its last word (say, "all slots free again") always reaches the swarm.
 */
import { newerAdvert } from '../../src/net/advert.ts'

export type GateVerdict = 'accept' | 'ignore'

export interface AdvertGateOptions {
  perMinute: number
  /** Adverts a quiet peer may send at once; default min(10, perMinute). */
  burst?: number
  /** Peers with an advert waiting, at most; more are dropped at once. Default 10 000. */
  maxHeld?: number
  now?: () => number
}

export interface AdvertGate {
  /** `order` is the advert's [ts, seq]: a held advert is replaced only by a newer one. */
  admit(peer: string, order: readonly [number, number]): Promise<GateVerdict>
  /** Adverts dropped so far (over the budget, replaced, or the held table full). */
  readonly dropped: number
  stop(): void
}

interface Bucket {
  tokens: number
  at: number
}

interface Held {
  order: readonly [number, number]
  resolve(v: GateVerdict): void
  timer: ReturnType<typeof setTimeout>
}

/** The gate's settings and tables, shared by the steps below. */
interface Gate {
  now: () => number
  burst: number
  maxHeld: number
  perMs: number
  buckets: Map<string, Bucket>
  held: Map<string, Held>
  dropped: number
  sweptAt: number
}

export function createAdvertGate(opts: AdvertGateOptions): AdvertGate {
  const now = opts.now ?? Date.now
  const g: Gate = {
    now,
    burst: opts.burst ?? Math.min(10, opts.perMinute),
    maxHeld: opts.maxHeld ?? 10_000,
    perMs: opts.perMinute / 60_000,
    buckets: new Map(),
    held: new Map(),
    dropped: 0,
    sweptAt: now(),
  }
  return {
    admit: async (peer, order) => admit(g, peer, order),
    get dropped() {
      return g.dropped
    },
    stop() {
      for (const h of g.held.values()) {
        clearTimeout(h.timer)
        h.resolve('ignore')
      }
      g.held.clear()
      g.buckets.clear()
    },
  }
}

function admit(g: Gate, peer: string, order: readonly [number, number]): GateVerdict | Promise<GateVerdict> {
  const waiting = g.held.get(peer)
  if (waiting) {
    g.dropped++
    if (!newerAdvert(order, waiting.order)) return 'ignore'
    // The newer advert takes the older one's place in the queue (and its send time).
    waiting.resolve('ignore')
    waiting.order = order
    return new Promise<GateVerdict>((resolve) => {
      waiting.resolve = resolve
    })
  }
  const wait = take(g, peer)
  if (wait === 0) return 'accept'
  if (g.held.size >= g.maxHeld) {
    g.dropped++
    return 'ignore'
  }
  return hold(g, peer, order, wait)
}

function refill(g: Gate, b: Bucket, t: number): void {
  b.tokens = Math.min(g.burst, b.tokens + (t - b.at) * g.perMs)
  b.at = t
}

/** Takes a token if there is one (0), else says how long until there is (ms). */
function take(g: Gate, peer: string): number {
  const t = g.now()
  // A full bucket is the same as none: forget those now and then, so the map stays bounded.
  if (t - g.sweptAt > 60_000) {
    g.sweptAt = t
    for (const [p, b] of g.buckets) {
      refill(g, b, t)
      if (b.tokens >= g.burst && !g.held.has(p)) g.buckets.delete(p)
    }
  }
  const b = g.buckets.get(peer) ?? { tokens: g.burst, at: t }
  g.buckets.set(peer, b)
  refill(g, b, t)
  if (b.tokens >= 1) {
    b.tokens -= 1
    return 0
  }
  return Math.ceil((1 - b.tokens) / g.perMs)
}

function hold(g: Gate, peer: string, order: readonly [number, number], waitMs: number): Promise<GateVerdict> {
  return new Promise<GateVerdict>((resolve) => {
    const h: Held = {
      order,
      resolve,
      timer: setTimeout(() => {
        g.held.delete(peer)
        const b = g.buckets.get(peer)
        if (b) {
          refill(g, b, g.now())
          b.tokens = Math.max(0, b.tokens - 1)
        }
        h.resolve('accept') // the newest advert held by then, not necessarily the first
      }, waitMs),
    }
    g.held.set(peer, h)
  })
}
