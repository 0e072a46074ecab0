/** Contributor preferences: persisted in the `settings` store, clamped on every read so stored junk cannot break us. */

export type RunWhen = 'visible' | 'always'

export interface ContributorSettings {
  /** The Contribute switch. */
  contribute: boolean
  /** Jobs served at once. */
  maxJobs: number
  /** WASM threads; 0 = automatic (up to 4 where the page is cross-origin isolated). */
  wasmThreads: number
  allowWebGpu: boolean
  /** Largest model this peer downloads and runs, in bytes. */
  maxModelBytes: number
  /** Budget for cached models in IndexedDB, in bytes (enforced by src/models). */
  modelCacheBytes: number
  /** 'visible': serve only while this tab is visible; 'always': also in the background. */
  runWhen: RunWhen
  /** Pause while on battery, where the Battery Status API exists. */
  pauseOnBattery: boolean
  /** Serve one job at a time under critical CPU pressure (Compute Pressure API). */
  backOffUnderPressure: boolean
}

const MB = 1024 * 1024

export const DEFAULT_SETTINGS: Readonly<ContributorSettings> = {
  contribute: false,
  maxJobs: 2,
  wasmThreads: 0,
  allowWebGpu: true,
  maxModelBytes: 512 * MB, // as the model hub's defaults, which own these two when present
  modelCacheBytes: 2048 * MB,
  runWhen: 'always',
  pauseOnBattery: true,
  backOffUnderPressure: true,
}

export const LIMITS = {
  maxJobs: [1, 16],
  wasmThreads: [0, 16],
  maxModelBytes: [1 * MB, 4096 * MB],
  modelCacheBytes: [16 * MB, 64 * 1024 * MB],
} as const satisfies Record<string, readonly [number, number]>

const clamp = (x: unknown, [lo, hi]: readonly [number, number], fallback: number) =>
  typeof x === 'number' && Number.isFinite(x) ? Math.min(hi, Math.max(lo, Math.round(x))) : fallback

const bool = (x: unknown, fallback: boolean) => (typeof x === 'boolean' ? x : fallback)

/** A complete, valid settings object from anything (stored value, form input, a patch over `base`). */
export function normalizeSettings(
  x: unknown,
  base: ContributorSettings = DEFAULT_SETTINGS,
): ContributorSettings {
  const o = (typeof x === 'object' && x !== null ? x : {}) as Record<string, unknown>
  return {
    contribute: bool(o.contribute, base.contribute),
    maxJobs: clamp(o.maxJobs, LIMITS.maxJobs, base.maxJobs),
    wasmThreads: clamp(o.wasmThreads, LIMITS.wasmThreads, base.wasmThreads),
    allowWebGpu: bool(o.allowWebGpu, base.allowWebGpu),
    maxModelBytes: clamp(o.maxModelBytes, LIMITS.maxModelBytes, base.maxModelBytes),
    modelCacheBytes: clamp(o.modelCacheBytes, LIMITS.modelCacheBytes, base.modelCacheBytes),
    runWhen: o.runWhen === 'visible' || o.runWhen === 'always' ? o.runWhen : base.runWhen,
    pauseOnBattery: bool(o.pauseOnBattery, base.pauseOnBattery),
    backOffUnderPressure: bool(o.backOffUnderPressure, base.backOffUnderPressure),
  }
}

/** Totals of what this browser served, shown in the panel. */
export interface ServedTotals {
  jobs: number
  computeMs: number
  /** Job request frame bytes received. */
  bytesIn: number
  /** Result frame bytes sent. */
  bytesOut: number
  /** bytesIn + bytesOut, plus what versions before the split counted (tensor bytes, in and out together). */
  bytes: number
}

/** Totals from a stored record or another tab's status; older ones have no bytesIn/bytesOut (read as 0). */
export function normalizeTotals(x: unknown): ServedTotals {
  const o = (typeof x === 'object' && x !== null ? x : {}) as Record<string, unknown>
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0)
  const bytesIn = n(o.bytesIn)
  const bytesOut = n(o.bytesOut)
  return {
    jobs: n(o.jobs),
    computeMs: n(o.computeMs),
    bytesIn,
    bytesOut,
    bytes: Math.max(n(o.bytes), bytesIn + bytesOut),
  }
}
