/**
 * Admission control for contributed compute: the on/off switch, a bounded number of slots (capped
 * under CPU pressure), and holds (pause, hidden tab, battery, another tab elected). A new hold refuses
 * new jobs at once and hands running ones back through `handBack`, so their requesters reissue them.
 */
import { JobHandedBackError } from '../shared/errors.ts'

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

/** Admission's mutable state; the factory's object reads it, the steps below change it. */
interface AdmissionState {
  contributing: boolean
  maxSlots: number
  cap: number | undefined
  used: number
  holds: Set<HoldReason>
  handBack: AbortController
  events: EventTarget
}

export function createAdmission(init: { maxSlots: number; contributing: boolean }): Admission {
  const s: AdmissionState = {
    contributing: init.contributing,
    maxSlots: Math.max(1, init.maxSlots),
    cap: undefined,
    used: 0,
    holds: new Set(),
    handBack: new AbortController(),
    events: new EventTarget(),
  }
  return {
    get contributing() {
      return s.contributing
    },
    get active() {
      return isActive(s)
    },
    get holds() {
      return [...s.holds]
    },
    get maxSlots() {
      return s.maxSlots
    },
    get capacity() {
      return capacity(s)
    },
    get used() {
      return s.used
    },
    get free() {
      return isActive(s) ? Math.max(0, capacity(s) - s.used) : 0
    },
    setContributing: (on) => setContributing(s, on),
    setMaxSlots: (n) => setMaxSlots(s, n),
    setSlotCap: (n) => setSlotCap(s, n),
    setHold: (reason, on) => setHold(s, reason, on),
    tryAcquire: () => tryAcquire(s),
    why: (code) => why(s, code),
    get handBack() {
      return s.handBack.signal
    },
    events: s.events,
  }
}

function changed(s: AdmissionState): void {
  s.events.dispatchEvent(new Event('change'))
}

function capacity(s: AdmissionState): number {
  return Math.min(s.maxSlots, s.cap ?? s.maxSlots)
}

function isActive(s: AdmissionState): boolean {
  return s.contributing && s.holds.size === 0
}

/** Running jobs are handed back; new ones get a fresh signal. */
function recall(s: AdmissionState, why: string): void {
  const old = s.handBack
  s.handBack = new AbortController()
  // Named, so an engine can tell the contributor's own recall from a requester's cancel.
  old.abort(new JobHandedBackError(why))
}

function setContributing(s: AdmissionState, on: boolean): void {
  if (on === s.contributing) return
  s.contributing = on
  if (!on) recall(s, 'the contributor switched contributing off')
  changed(s)
}

// Unchanged values are no news: every 'change' may become an advert to the whole swarm.
function setMaxSlots(s: AdmissionState, n: number): void {
  const next = Math.max(1, Math.floor(n))
  if (next === s.maxSlots) return
  s.maxSlots = next
  changed(s)
}

function setSlotCap(s: AdmissionState, n: number | undefined): void {
  const next = n == null ? undefined : Math.max(0, Math.floor(n))
  if (next === s.cap) return
  s.cap = next
  changed(s)
}

function setHold(s: AdmissionState, reason: HoldReason, on: boolean): void {
  if (on === s.holds.has(reason)) return
  if (on) {
    s.holds.add(reason)
    recall(s, HOLD_TEXT[reason])
  } else s.holds.delete(reason)
  changed(s)
}

function tryAcquire(s: AdmissionState): (() => void) | AdmissionRefusal {
  if (!isActive(s)) return 'not-contributing'
  if (s.used >= capacity(s)) return 'busy'
  s.used++
  changed(s)
  let released = false
  return () => {
    if (released) return
    released = true
    s.used--
    changed(s)
  }
}

function why(s: AdmissionState, code: AdmissionRefusal): string {
  if (code === 'busy')
    return capacity(s) < s.maxSlots ? 'slots reduced under CPU pressure' : 'all job slots are in use'
  const held = [...s.holds].map((h) => HOLD_TEXT[h])
  return held.length ? `paused: ${held.join('; ')}` : 'this peer has contributing switched off'
}
