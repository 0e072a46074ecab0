/**
 * Admission control for contributed compute: the on/off switch, a bounded number of slots (capped
 * under CPU pressure), and holds (pause, hidden tab, battery, another tab elected). A new hold refuses
 * new jobs at once and hands running ones back through `handBack`, so their requesters reissue them.
 */
export type AdmissionRefusal = 'not-contributing' | 'busy'

export type HoldReason = 'paused' | 'hidden' | 'battery' | 'standby'

const HOLD_TEXT: Record<HoldReason, string> = {
  paused: 'the contributor paused',
  hidden: 'the contributing tab is hidden (visible-only is set)',
  battery: 'the contributor is on battery',
  standby: 'another tab of this browser is the compute tab',
}

export interface Admission {
  /** The switch as the user set it. */
  readonly contributing: boolean
  /** Switched on and not held: what the advert says. */
  readonly active: boolean
  readonly holds: readonly HoldReason[]
  readonly maxSlots: number
  /** Slots usable now: maxSlots, or fewer under a cap (CPU pressure). */
  readonly capacity: number
  readonly used: number
  readonly free: number
  setContributing(on: boolean): void
  setMaxSlots(n: number): void
  /** Caps usable slots below maxSlots (undefined lifts the cap). */
  setSlotCap(n: number | undefined): void
  setHold(reason: HoldReason, on: boolean): void
  /** A release function, or the reason the job cannot be admitted now. */
  tryAcquire(): (() => void) | AdmissionRefusal
  /** Human-readable cause of a refusal, for the reject frame. */
  why(code: AdmissionRefusal): string
  /** Aborted (reason: an Error naming the cause) when running jobs must be handed back. */
  readonly handBack: AbortSignal
  events: EventTarget
}

export function createAdmission(init: { maxSlots: number; contributing: boolean }): Admission {
  let contributing = init.contributing
  let maxSlots = Math.max(1, init.maxSlots)
  let cap: number | undefined
  let used = 0
  const holds = new Set<HoldReason>()
  let handBack = new AbortController()
  const events = new EventTarget()
  const changed = () => events.dispatchEvent(new Event('change'))
  const capacity = () => Math.min(maxSlots, cap ?? maxSlots)
  const active = () => contributing && holds.size === 0

  /** Running jobs are handed back; new ones get a fresh signal. */
  const recall = (why: string) => {
    const old = handBack
    handBack = new AbortController()
    old.abort(new Error(why))
  }

  return {
    get contributing() {
      return contributing
    },
    get active() {
      return active()
    },
    get holds() {
      return [...holds]
    },
    get maxSlots() {
      return maxSlots
    },
    get capacity() {
      return capacity()
    },
    get used() {
      return used
    },
    get free() {
      return active() ? Math.max(0, capacity() - used) : 0
    },
    setContributing(on) {
      if (on === contributing) return
      contributing = on
      if (!on) recall('the contributor switched contributing off')
      changed()
    },
    // Unchanged values are no news: every 'change' may become an advert to the whole swarm.
    setMaxSlots(n) {
      const next = Math.max(1, Math.floor(n))
      if (next === maxSlots) return
      maxSlots = next
      changed()
    },
    setSlotCap(n) {
      const next = n == null ? undefined : Math.max(0, Math.floor(n))
      if (next === cap) return
      cap = next
      changed()
    },
    setHold(reason, on) {
      if (on === holds.has(reason)) return
      if (on) {
        holds.add(reason)
        recall(HOLD_TEXT[reason])
      } else holds.delete(reason)
      changed()
    },
    tryAcquire() {
      if (!active()) return 'not-contributing'
      if (used >= capacity()) return 'busy'
      used++
      changed()
      let released = false
      return () => {
        if (released) return
        released = true
        used--
        changed()
      }
    },
    why(code) {
      if (code === 'busy')
        return capacity() < maxSlots ? 'slots reduced under CPU pressure' : 'all job slots are in use'
      const held = [...holds].map((h) => HOLD_TEXT[h])
      return held.length ? `paused: ${held.join('; ')}` : 'this peer has contributing switched off'
    },
    get handBack() {
      return handBack.signal
    },
    events,
  }
}
