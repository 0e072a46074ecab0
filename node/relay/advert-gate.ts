/**
 * The relay's per-peer advert rate limit: a token bucket per advertising PeerId. An advert over the
 * budget is not simply dropped: the newest one waits until the budget allows and then goes out, and
 * any older one still waiting is dropped. So a peer that bursts loses only the adverts a later one
 * replaces, and its last word (say, "all slots free again") always reaches the swarm.
 */
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

const newer = (a: readonly [number, number], b: readonly [number, number]) =>
  a[0] > b[0] || (a[0] === b[0] && a[1] > b[1])

export function createAdvertGate(opts: AdvertGateOptions): AdvertGate {
  const now = opts.now ?? Date.now
  const burst = opts.burst ?? Math.min(10, opts.perMinute)
  const maxHeld = opts.maxHeld ?? 10_000
  const perMs = opts.perMinute / 60_000
  const buckets = new Map<string, Bucket>()
  const held = new Map<string, Held>()
  let dropped = 0
  let sweptAt = now()

  const refill = (b: Bucket, t: number) => {
    b.tokens = Math.min(burst, b.tokens + (t - b.at) * perMs)
    b.at = t
  }
  /** Takes a token if there is one (0), else says how long until there is (ms). */
  const take = (peer: string): number => {
    const t = now()
    // A full bucket is the same as none: forget those now and then, so the map stays bounded.
    if (t - sweptAt > 60_000) {
      sweptAt = t
      for (const [p, b] of buckets) {
        refill(b, t)
        if (b.tokens >= burst && !held.has(p)) buckets.delete(p)
      }
    }
    const b = buckets.get(peer) ?? { tokens: burst, at: t }
    buckets.set(peer, b)
    refill(b, t)
    if (b.tokens >= 1) {
      b.tokens -= 1
      return 0
    }
    return Math.ceil((1 - b.tokens) / perMs)
  }
  const hold = (peer: string, order: readonly [number, number], waitMs: number) =>
    new Promise<GateVerdict>((resolve) => {
      const h: Held = {
        order,
        resolve,
        timer: setTimeout(() => {
          held.delete(peer)
          const b = buckets.get(peer)
          if (b) {
            refill(b, now())
            b.tokens = Math.max(0, b.tokens - 1)
          }
          h.resolve('accept') // the newest advert held by then, not necessarily the first
        }, waitMs),
      }
      held.set(peer, h)
    })

  return {
    async admit(peer, order) {
      const waiting = held.get(peer)
      if (waiting) {
        dropped++
        if (!newer(order, waiting.order)) return 'ignore'
        // The newer advert takes the older one's place in the queue (and its send time).
        waiting.resolve('ignore')
        waiting.order = order
        return new Promise<GateVerdict>((resolve) => {
          waiting.resolve = resolve
        })
      }
      const wait = take(peer)
      if (wait === 0) return 'accept'
      if (held.size >= maxHeld) {
        dropped++
        return 'ignore'
      }
      return hold(peer, order, wait)
    },
    get dropped() {
      return dropped
    },
    stop() {
      for (const h of held.values()) {
        clearTimeout(h.timer)
        h.resolve('ignore')
      }
      held.clear()
      buckets.clear()
    },
  }
}
