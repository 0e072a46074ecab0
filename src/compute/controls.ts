/**
 * Contributor controls: persisted settings applied to admission, the engine and the device watchers;
 * pause/resume; the one-compute-tab election; running jobs and served totals for the live panel.
 */

import { TypedEventEmitter } from 'main-event'
import { JobHandedBackError } from '../shared/errors.ts'
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
import {
  type ContributorSettings,
  normalizeSettings,
  normalizeTotals,
  type ServedTotals,
} from './settings.ts'
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

type Emit = <K extends keyof ControlsEvents>(type: K, ...[detail]: DetailArgs<ControlsEvents[K]>) => void

/** The controls' services and mutable state, shared by the steps below. */
interface Ctl {
  o: ControlsOptions
  emit: Emit
  settings: ContributorSettings
  paused: boolean
  totals: ServedTotals
  /** Totals change with every job: written at most once a second (trailing), not per job. */
  totalsTimer: ReturnType<typeof setTimeout> | undefined
  running: Map<string, RunningJob>
  wasActive: boolean
  admission: Admission
  compute: ComputeService
  engine: SwitchableEngine
  election: Election | undefined
  conditions: Conditions
}

export async function createControls(o: ControlsOptions): Promise<ControlsInternals> {
  const events = new TypedEventEmitter<ControlsEvents>()
  const emit: Emit = (type, ...[detail]) =>
    events.dispatchEvent(detail === undefined ? new Event(type) : new CustomEvent(type, { detail }))
  const stored = normalizeSettings(await o.store.getSetting(SETTINGS_KEY))
  const settings: ContributorSettings = {
    ...stored,
    contribute: o.contribute ?? stored.contribute,
    maxJobs: o.maxSlots ?? stored.maxJobs,
  }
  const totals = normalizeTotals(await o.store.getSetting(TOTALS_KEY))

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
      admission.active
        ? admission.handBack
        : AbortSignal.abort(new JobHandedBackError(admission.why('not-contributing'))),
    maxModelBytes: () => current(c).maxModelBytes,
  })
  const c: Ctl = {
    o,
    emit,
    settings,
    paused: false,
    totals,
    totalsTimer: undefined,
    running: new Map(),
    wasActive: false,
    admission,
    compute,
    engine,
    election: o.election ? createElection(o.storeName) : undefined,
    conditions: watchConditions(admission, () => emit('change')),
  }
  listen(c)
  const timer = c.election ? setInterval(() => publish(c), STATUS_EVERY_MS) : undefined
  apply(c)
  return controlsApi(c, events, jobEngine, timer)
}

function controlsApi(
  c: Ctl,
  events: ControlsInternals['events'],
  jobEngine: InferenceEngine,
  timer: ReturnType<typeof setInterval> | undefined,
): ControlsInternals {
  return {
    events,
    admission: c.admission,
    engine: c.engine,
    compute: c.compute,
    jobEngine,
    settings: () => ({ ...current(c) }),
    async update(patch) {
      await commit(c, normalizeSettings(patch, current(c)))
      return { ...current(c) }
    },
    setContributing: (on) => commit(c, { ...current(c), contribute: on }),
    get paused() {
      return c.paused
    },
    pause() {
      c.paused = true
      apply(c)
    },
    resume() {
      c.paused = false
      apply(c)
    },
    state: () => state(c),
    totals: () => ({ ...c.totals }),
    running: () => [...c.running.values()],
    computeTab: () => computeTab(c),
    jobStarted(job) {
      c.running.set(job.job, job)
      publish(c)
      c.emit('job-started', job)
    },
    jobEnded: (job, outcome) => jobEnded(c, job, outcome),
    stop: () => stop(c, timer),
  }
}

/** The settings, with the model limits read from their owner (the model hub) when there is one. */
function current(c: Ctl): ContributorSettings {
  const limits = c.o.modelLimits
  return limits
    ? normalizeSettings(
        { maxModelBytes: limits.maxModelBytes, modelCacheBytes: limits.quotaBytes },
        c.settings,
      )
    : c.settings
}

/** Pushes changed model limits to their owner, which enforces them (and evicts over quota). */
async function pushLimits(c: Ctl, next: ContributorSettings): Promise<void> {
  const limits = c.o.modelLimits
  if (!limits) return
  if (limits.maxModelBytes !== next.maxModelBytes) await limits.setMaxModelBytes(next.maxModelBytes)
  if (limits.quotaBytes !== next.modelCacheBytes) await limits.setQuota(next.modelCacheBytes)
}

function state(c: Ctl): ControlsState {
  const { admission, conditions } = c
  return {
    contributing: admission.contributing,
    active: admission.active,
    paused: c.paused,
    holds: [...admission.holds],
    leader: c.election?.leader,
    crossOriginIsolated: globalThis.crossOriginIsolated === true,
    onBattery: conditions.onBattery,
    pressure: conditions.pressure,
    engineStarted: c.engine.active,
  }
}

function publish(c: Ctl): void {
  c.election?.publish({
    peer: c.o.selfId,
    at: Date.now(),
    active: c.admission.active,
    holds: [...c.admission.holds],
    running: [...c.running.values()],
    totals: c.totals,
  } satisfies ComputeTabStatus)
}

/** Applies settings and leadership to admission, the election queue and the engine. */
function apply(c: Ctl): void {
  const { admission, election, settings } = c
  admission.setHold('paused', c.paused)
  election?.want(settings.contribute)
  admission.setHold('standby', election != null && !election.leader)
  c.conditions.apply(settings)
  admission.setMaxSlots(settings.maxJobs)
  admission.setContributing(settings.contribute)
  c.compute.configure(settings)
  publish(c)
  c.emit('change')
}

/** Wires admission, the election and the engine to the controls. */
function listen(c: Ctl): void {
  const { admission, election } = c
  /**
   * Contributing (again, or on a new worker): start the engine, its runtime and the sessions a pause
   * stopped now, so the next job does not pay for them.
   */
  const start = () => c.compute.start()
  // On becoming active only: 'change' also comes with every job.
  admission.events.addEventListener('change', () => {
    if (admission.active && !c.wasActive) start()
    c.wasActive = admission.active
  })
  election?.events.addEventListener('change', () => {
    admission.setHold('standby', !election.leader)
    publish(c)
    c.emit('change')
  })
  election?.events.addEventListener('message', (e) => {
    const m = (e as CustomEvent<{ t: string; settings?: unknown }>).detail
    if (m.t !== 'settings') return
    c.settings = normalizeSettings(m.settings, current(c))
    apply(c)
    void pushLimits(c, c.settings).catch(() => {})
  })
  c.engine.events.addEventListener('change', () => {
    if (admission.active) start()
    c.emit('engine')
  })
}

/** Tells the other tabs first (a tab switched off must not hand the lock to one still on), then applies and persists. */
async function commit(c: Ctl, next: ContributorSettings): Promise<void> {
  c.settings = next
  c.election?.send({ t: 'settings', settings: c.settings })
  apply(c)
  await c.o.store.putSetting(SETTINGS_KEY, c.settings)
  await pushLimits(c, c.settings)
}

function computeTab(c: Ctl): ComputeTabStatus | undefined {
  const s = c.election?.status as ComputeTabStatus | undefined
  // A tab of an older version may publish totals without bytesIn/bytesOut.
  return s && s.peer !== c.o.selfId ? { ...s, totals: normalizeTotals(s.totals) } : undefined
}

function jobEnded(c: Ctl, job: RunningJob, outcome: Omit<JobDone, keyof RunningJob>): void {
  c.running.delete(job.job)
  if (outcome.ok) {
    const { totals } = c
    const bytesIn = outcome.bytesIn ?? 0
    const bytesOut = outcome.bytesOut ?? 0
    c.totals = {
      jobs: totals.jobs + 1,
      computeMs: totals.computeMs + (outcome.runMs ?? 0),
      bytesIn: totals.bytesIn + bytesIn,
      bytesOut: totals.bytesOut + bytesOut,
      bytes: totals.bytes + (outcome.bytes ?? bytesIn + bytesOut),
    }
    saveTotals(c)
    c.emit('totals')
  }
  publish(c)
  c.emit('job-done', { ...job, ...outcome })
}

function saveTotals(c: Ctl): void {
  c.totalsTimer ??= setTimeout(() => {
    c.totalsTimer = undefined
    void c.o.store.putSetting(TOTALS_KEY, c.totals).catch(() => {})
  }, 1000)
}

function stop(c: Ctl, timer: ReturnType<typeof setInterval> | undefined): void {
  clearInterval(timer)
  if (c.totalsTimer) {
    clearTimeout(c.totalsTimer)
    void c.o.store.putSetting(TOTALS_KEY, c.totals).catch(() => {})
  }
  c.election?.close()
  c.conditions.stop()
  c.compute.stop()
}
