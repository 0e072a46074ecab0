/**
 * Watches the tab and the device: holds admission while the tab is hidden (when visible-only is set)
 * or on battery (Battery Status API), and caps it at one job under critical CPU pressure (Compute
 * Pressure API). Missing APIs mean no hold.
 */
import type { Admission } from './admission.ts'
import type { ContributorSettings } from './settings.ts'

/** Neither API is in TypeScript's DOM lib yet: the parts used here. */
interface BatteryManager extends EventTarget {
  charging: boolean
}
type PressureState = 'nominal' | 'fair' | 'serious' | 'critical'
interface PressureRecord {
  state: PressureState
}
interface PressureObserverLike {
  observe(source: 'cpu', options?: { sampleInterval?: number }): Promise<void>
  disconnect(): void
}
type PressureObserverCtor = new (cb: (records: PressureRecord[]) => void) => PressureObserverLike

export interface Conditions {
  /** What the device reports now; undefined where the API is missing. */
  readonly onBattery: boolean | undefined
  readonly pressure: PressureState | undefined
  readonly hidden: boolean
  apply(settings: ContributorSettings): void
  stop(): void
}

export function watchConditions(admission: Admission, onChange: () => void): Conditions {
  let settings: ContributorSettings | undefined
  let onBattery: boolean | undefined
  let pressure: PressureState | undefined
  let battery: BatteryManager | undefined
  let observer: PressureObserverLike | undefined
  let capped = false
  const hidden = () => typeof document !== 'undefined' && document.visibilityState === 'hidden'

  let last = ''
  const update = () => {
    if (!settings) return
    // The pressure observer reports every sample, mostly the same state: only a change is news.
    const now = JSON.stringify([settings, hidden(), onBattery, pressure])
    if (now === last) return
    last = now
    admission.setHold('hidden', settings.runWhen === 'visible' && hidden())
    admission.setHold('battery', settings.pauseOnBattery && onBattery === true)
    // Our own jobs add to the pressure, so back off to one job rather than stop (which would only
    // flap); lift the cap once pressure falls below 'serious'.
    capped = settings.backOffUnderPressure && (pressure === 'critical' || (capped && pressure === 'serious'))
    admission.setSlotCap(capped ? 1 : undefined)
    onChange()
  }

  const onVisibility = () => update()
  // A Node peer has no page and no battery API: neither hold applies there.
  globalThis.document?.addEventListener('visibilitychange', onVisibility)

  const nav = globalThis.navigator as (Navigator & { getBattery?: () => Promise<BatteryManager> }) | undefined
  const onCharging = () => {
    onBattery = battery ? !battery.charging : undefined
    update()
  }
  nav
    ?.getBattery?.()
    .then((b) => {
      battery = b
      b.addEventListener('chargingchange', onCharging)
      onCharging()
    })
    .catch(() => {})

  const Ctor = (globalThis as { PressureObserver?: PressureObserverCtor }).PressureObserver
  if (Ctor) {
    try {
      observer = new Ctor((records) => {
        pressure = records.at(-1)?.state
        update()
      })
      observer.observe('cpu', { sampleInterval: 2000 }).catch(() => {
        observer = undefined
      })
    } catch {
      observer = undefined
    }
  }

  return {
    get onBattery() {
      return onBattery
    },
    get pressure() {
      return pressure
    },
    get hidden() {
      return hidden()
    },
    apply(s) {
      settings = s
      update()
    },
    stop() {
      globalThis.document?.removeEventListener('visibilitychange', onVisibility)
      battery?.removeEventListener('chargingchange', onCharging)
      observer?.disconnect()
    },
  }
}
