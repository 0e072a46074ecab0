/**
 * The free-slot count a contributor advertises: a drop counts at once, a rise only once it has held
 * for `settleMs`. Under a steady stream of jobs the instant count flips between 0 and 1 with every job,
 * and each flip would be an advert (signed, relayed and checked by every tab); as settled it stays at
 * its low and the adverts stop until the contributor is really freer.
 *
 * @example
 * const slots = settleSlots({ read: () => admission.free, settleMs: 1000 })
 * admission.events.addEventListener('change', slots.update)
 * slots.events.addEventListener('change', () => discovery.announce())
 */

export interface SettledSlots {
  /** The count to advertise. */
  readonly value: number
  /** Call on every change of the instant count. */
  update(): void
  /** Fires 'change' when `value` changes. */
  events: EventTarget
  stop(): void
}

export function settleSlots(o: { read(): number; settleMs: number }): SettledSlots {
  const events = new EventTarget()
  let value = o.read()
  let low = value // lowest count since the pending rise began
  let timer: ReturnType<typeof setTimeout> | undefined

  const set = (v: number) => {
    if (v === value) return
    value = v
    events.dispatchEvent(new Event('change'))
  }
  const rise = () => {
    timer = undefined
    set(low)
    update() // higher still: that rise must hold as well
  }
  function update() {
    const now = o.read()
    if (now <= value) {
      clearTimeout(timer)
      timer = undefined
      set(now)
    } else if (timer === undefined) {
      low = now
      timer = setTimeout(rise, o.settleMs)
    } else low = Math.min(low, now)
  }

  return {
    get value() {
      return value
    },
    update,
    events,
    stop: () => clearTimeout(timer),
  }
}
