/**
 * Contributor controls: persisted settings applied to admission, the engine and the device watchers;
 * pause/resume; the one-compute-tab election; running jobs and served totals for the live panel.
 */

import { TypedEventEmitter } from 'main-event'
import type { Service } from '../shared/lifecycle.ts'
import { calibrationStore } from '../store/calibration.ts'
import type { Store } from '../store/db.ts'
import { type Admission, createAdmission } from './admission.ts'
import type { InferenceEngine } from './bridge.ts'
import { type ComputeService, createComputeService } from './compute-service.ts'
import { type Conditions, watchConditions } from './conditions.ts'
import type {
  ComputeTabStatus,
  Controls,
  ControlsEvents,
  ControlsState,
  JobDone,
  RunningJob,
} from './controls-types.ts'
import { createElection, type Election } from './election.ts'
import { type ContributorSettings, normalizeSettings, normalizeTotals } from './settings.ts'
import type { SwitchableEngine } from './switchable-engine.ts'

export type { HoldReason } from './admission.ts'
export type * from './controls-types.ts'
export type { ContributorSettings, RunWhen, ServedTotals } from './settings.ts'

export interface ControlsInternals extends Controls, Service {
  admission: Admission
  /** The engine for the requester's own local runs (the compute service's). */
  engine: SwitchableEngine
  /** Builds the engines from these settings. */
  compute: ComputeService
  /** The engine for jobs served to others: hand-back on pause, model size limit. */
  jobEngine: InferenceEngine
  setContributing(on: boolean): Promise<void>
  jobStarted(job: RunningJob): void
  jobEnded(job: RunningJob, outcome: Omit<JobDone, keyof RunningJob>): void
  stop(): void
}

export interface ControlsOptions {
  store: Pick<Store, 'getSetting' | 'putSetting'>
  storeName: string
  selfId: string
  modelSource(cid: string, signal?: AbortSignal): Promise<Uint8Array>
  /** Overrides the stored switch for this page. */
  contribute?: boolean
  /** Overrides the stored max concurrent jobs for this page. */
  maxSlots?: number
  /** A caller's engine, used as is (thread and WebGPU settings then do not apply). */
  engine?: InferenceEngine
  election?: boolean
  /** Start no worker until this tab contributes (or runs a job of its own). */
  lazyEngine?: boolean
  /** Where the model size limit and cache quota live (the model hub); the settings mirror it. */
  modelLimits?: ModelLimits
}

export interface ModelLimits {
  readonly maxModelBytes: number
  readonly quotaBytes: number
  setMaxModelBytes(bytes: number): Promise<void>
  setQuota(bytes: number): Promise<void>
}

const SETTINGS_KEY = 'contributor-settings'
const TOTALS_KEY = 'contributor-totals'
const STATUS_EVERY_MS = 1000

/** emit()'s detail argument: required for a CustomEvent of the map, none for a plain Event. */
type DetailArgs<E> = E extends CustomEvent<infer D> ? [detail: D] : []

export async function createControls(o: ControlsOptions): Promise<ControlsInternals> {
  const events = new TypedEventEmitter<ControlsEvents>()
  const emit = <K extends keyof ControlsEvents>(type: K, ...[detail]: DetailArgs<ControlsEvents[K]>) =>
    events.dispatchEvent(detail === undefined ? new Event(type) : new CustomEvent(type, { detail }))
  const stored = normalizeSettings(await o.store.getSetting(SETTINGS_KEY))
  let settings: ContributorSettings = {
    ...stored,
    contribute: o.contribute ?? stored.contribute,
    maxJobs: o.maxSlots ?? stored.maxJobs,
  }
  const limits = o.modelLimits
  /** The settings, with the model limits read from their owner (the model hub) when there is one. */
  const current = (): ContributorSettings =>
    limits
      ? normalizeSettings(
          { maxModelBytes: limits.maxModelBytes, modelCacheBytes: limits.quotaBytes },
          settings,
        )
      : settings
  /** Pushes changed model limits to their owner, which enforces them (and evicts over quota). */
  const pushLimits = async (next: ContributorSettings) => {
    if (!limits) return
    if (limits.maxModelBytes !== next.maxModelBytes) await limits.setMaxModelBytes(next.maxModelBytes)
    if (limits.quotaBytes !== next.modelCacheBytes) await limits.setQuota(next.modelCacheBytes)
  }
  let totals = normalizeTotals(await o.store.getSetting(TOTALS_KEY))
  // Totals change with every job: written at most once a second (trailing), not per job.
  let totalsTimer: ReturnType<typeof setTimeout> | undefined
  const saveTotals = () => {
    totalsTimer ??= setTimeout(() => {
      totalsTimer = undefined
      void o.store.putSetting(TOTALS_KEY, totals).catch(() => {})
    }, 1000)
  }
  const running = new Map<string, RunningJob>()
  let paused = false

  // Off until apply() has set the holds, so a standby tab never looks active for a moment.
  const admission = createAdmission({ maxSlots: settings.maxJobs, contributing: false })
  const compute = createComputeService({
    modelSource: o.modelSource,
    calibration: calibrationStore(o.store),
    ...(o.engine ? { engine: o.engine } : {}),
    lazy: o.lazyEngine ?? false,
    // A paused contributor's stopped worker restarts on resume (compute.start()), not at once.
    restartNow: () => admission.active,
    settings,
  })
  const { engine } = compute
  const jobEngine = engine.guarded({
    // A job reaching the engine while held (e.g. paused mid-download) is handed back too.
    handBack: () =>
      admission.active ? admission.handBack : AbortSignal.abort(new Error(admission.why('not-contributing'))),
    maxModelBytes: () => current().maxModelBytes,
  })

  const election: Election | undefined = o.election ? createElection(o.storeName) : undefined
  const conditions: Conditions = watchConditions(admission, () => emit('change'))

  const state = (): ControlsState => ({
    contributing: admission.contributing,
    active: admission.active,
    paused,
    holds: [...admission.holds],
    leader: election?.leader,
    crossOriginIsolated: globalThis.crossOriginIsolated === true,
    onBattery: conditions.onBattery,
    pressure: conditions.pressure,
    engineStarted: engine.active,
  })
  const publish = () =>
    election?.publish({
      peer: o.selfId,
      at: Date.now(),
      active: admission.active,
      holds: [...admission.holds],
      running: [...running.values()],
      totals,
    } satisfies ComputeTabStatus)

  /**
   * Contributing (again, or on a new worker): start the engine, its runtime and the sessions a pause
   * stopped now, so the next job does not pay for them.
   */
  const start = () => compute.start()
  let wasActive = false

  /** Applies settings and leadership to admission, the election queue and the engine. */
  const apply = () => {
    admission.setHold('paused', paused)
    election?.want(settings.contribute)
    admission.setHold('standby', election != null && !election.leader)
    conditions.apply(settings)
    admission.setMaxSlots(settings.maxJobs)
    admission.setContributing(settings.contribute)
    compute.configure(settings)
    publish()
    emit('change')
  }
  // On becoming active only: 'change' also comes with every job.
  admission.events.addEventListener('change', () => {
    if (admission.active && !wasActive) start()
    wasActive = admission.active
  })
  election?.events.addEventListener('change', () => {
    admission.setHold('standby', !election.leader)
    publish()
    emit('change')
  })
  election?.events.addEventListener('message', (e) => {
    const m = (e as CustomEvent<{ t: string; settings?: unknown }>).detail
    if (m.t !== 'settings') return
    settings = normalizeSettings(m.settings, current())
    apply()
    void pushLimits(settings).catch(() => {})
  })
  engine.events.addEventListener('change', () => {
    if (admission.active) start()
    emit('engine')
  })
  const timer = election ? setInterval(publish, STATUS_EVERY_MS) : undefined
  apply()

  /** Tells the other tabs first (a tab switched off must not hand the lock to one still on), then applies and persists. */
  const commit = async (next: ContributorSettings) => {
    settings = next
    election?.send({ t: 'settings', settings })
    apply()
    await o.store.putSetting(SETTINGS_KEY, settings)
    await pushLimits(settings)
  }

  return {
    events,
    admission,
    engine,
    compute,
    jobEngine,
    settings: () => ({ ...current() }),
    async update(patch) {
      await commit(normalizeSettings(patch, current()))
      return { ...current() }
    },
    setContributing: (on) => commit({ ...current(), contribute: on }),
    get paused() {
      return paused
    },
    pause() {
      paused = true
      apply()
    },
    resume() {
      paused = false
      apply()
    },
    state,
    totals: () => ({ ...totals }),
    running: () => [...running.values()],
    computeTab() {
      const s = election?.status as ComputeTabStatus | undefined
      // A tab of an older version may publish totals without bytesIn/bytesOut.
      return s && s.peer !== o.selfId ? { ...s, totals: normalizeTotals(s.totals) } : undefined
    },
    jobStarted(job) {
      running.set(job.job, job)
      publish()
      emit('job-started', job)
    },
    jobEnded(job, outcome) {
      running.delete(job.job)
      if (outcome.ok) {
        const bytesIn = outcome.bytesIn ?? 0
        const bytesOut = outcome.bytesOut ?? 0
        totals = {
          jobs: totals.jobs + 1,
          computeMs: totals.computeMs + (outcome.runMs ?? 0),
          bytesIn: totals.bytesIn + bytesIn,
          bytesOut: totals.bytesOut + bytesOut,
          bytes: totals.bytes + (outcome.bytes ?? bytesIn + bytesOut),
        }
        saveTotals()
        emit('totals')
      }
      publish()
      emit('job-done', { ...job, ...outcome })
    },
    stop() {
      clearInterval(timer)
      if (totalsTimer) {
        clearTimeout(totalsTimer)
        void o.store.putSetting(TOTALS_KEY, totals).catch(() => {})
      }
      election?.close()
      conditions.stop()
      compute.stop()
    },
  }
}
