/**
 * The busy-slot count a contributor advertises: the time average of its used slots (an exponential
 * average, time constant `tauMs`), rounded with hysteresis. Under a steady stream of jobs the instant
 * count flips between 0 and 1 with every job, and each flip was an advert (signed, relayed and checked
 * by every tab); averaged, a stream that keeps a slot three-quarters busy reads as busy, one that keeps
 * it a quarter busy or less as free, and the count moves only when that changes. Free slots are
 * `capacity − value`: switching on or off and capacity changes still show at once.
 *
 * @example
 * const busy = settleUsed({ read: () => admission.used, tauMs: 500 })
 * admission.events.addEventListener('change', busy.update)
 * busy.events.addEventListener('change', () => discovery.announce())
 */

export interface SettledUsed {
  /** The busy count to advertise. */
  readonly value: number
  /** Call on every change of the instant count. */
  update(): void
  /** Fires 'change' when `value` changes. */
  events: EventTarget
  stop(): void
}

/** How far the average must move past the advertised count before it changes (0.5 would flip on noise). */
const BAND = 0.75

export function settleUsed(o: { read(): number; tauMs: number; now?: () => number }): SettledUsed {
  const now = o.now ?? (() => performance.now())
  const events = new EventTarget()
  let current = o.read() // the instant count since `at`
  let avg = current
  let at = now()
  let value = current
  let timer: ReturnType<typeof setTimeout> | undefined
  let stopped = false

  function update() {
    if (stopped) return
    const t = now()
    avg = current + (avg - current) * Math.exp(-(t - at) / o.tauMs)
    at = t
    current = o.read()
    const before = value
    while (avg >= value + BAND) value++
    while (avg <= value - BAND) value--
    clearTimeout(timer)
    timer = undefined
    // The average heads for `current`: wake when it crosses the next band edge on the way.
    const edge = current > value ? value + BAND : current < value ? value - BAND : undefined
    if (edge !== undefined && Math.abs(current - value) >= 1)
      timer = setTimeout(update, Math.max(1, o.tauMs * Math.log((current - avg) / (current - edge))))
    if (value !== before) events.dispatchEvent(new Event('change'))
  }

  return {
    get value() {
      return value
    },
    update,
    events,
    stop() {
      stopped = true
      clearTimeout(timer)
    },
  }
}
