/** Admission control for contributed compute: an on/off switch and a bounded number of slots. */
export type AdmissionRefusal = 'not-contributing' | 'busy'

export interface Admission {
  readonly contributing: boolean
  readonly maxSlots: number
  readonly free: number
  setContributing(on: boolean): void
  /** A release function, or the reason the job cannot be admitted now. */
  tryAcquire(): (() => void) | AdmissionRefusal
  events: EventTarget
}

export function createAdmission(init: { maxSlots: number; contributing: boolean }): Admission {
  let contributing = init.contributing
  let used = 0
  const events = new EventTarget()
  const changed = () => events.dispatchEvent(new Event('change'))
  return {
    get contributing() {
      return contributing
    },
    maxSlots: init.maxSlots,
    get free() {
      return contributing ? init.maxSlots - used : 0
    },
    setContributing(on) {
      contributing = on
      changed()
    },
    tryAcquire() {
      if (!contributing) return 'not-contributing'
      if (used >= init.maxSlots) return 'busy'
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
    events,
  }
}
