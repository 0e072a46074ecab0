/**
 * Per-model WASM thread calibration, cached per model CID so a contributor measures each model once.
 * Kept in the `settings` store under `calibration/<cid>`: a per-device choice, no schema change needed.
 */
import type { Store } from './db.ts'

export interface CalibrationRecord {
  v: 1
  cid: string
  /** The thread count to use for this model. */
  threads: number
  /** The largest thread count this device offered when it was measured; a change invalidates the record. */
  maxThreads: number
  /** Median run time (ms) per measured thread count, e.g. { 1: 10.2, 2: 6.1 }. */
  medianMs: Record<number, number>
  /** Calibrations so far: 1 on the first run, then one more per re-check (engine.ts, recheckAfter). */
  checks?: number
  at: number
}

export interface CalibrationStore {
  get(cid: string): Promise<CalibrationRecord | undefined>
  put(rec: CalibrationRecord): Promise<void>
}

const key = (cid: string) => `calibration/${cid}`

function isRecord(x: unknown): x is CalibrationRecord {
  const r = x as CalibrationRecord | undefined
  return (
    r?.v === 1 &&
    typeof r.cid === 'string' &&
    Number.isInteger(r.threads) &&
    r.threads > 0 &&
    (r.checks === undefined || (Number.isInteger(r.checks) && r.checks >= 1))
  )
}

export function calibrationStore(store: Pick<Store, 'getSetting' | 'putSetting'>): CalibrationStore {
  return {
    async get(cid) {
      const rec = await store.getSetting<unknown>(key(cid))
      return isRecord(rec) ? rec : undefined
    },
    put: (rec) => store.putSetting(key(rec.cid), rec),
  }
}
