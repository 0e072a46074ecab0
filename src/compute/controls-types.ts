/** The public side of the contributor controls (`peer.controls`): state, live status and events. */
import type { TypedEventTarget } from 'main-event'
import type { Receipt } from '../trust/receipt.ts'
import type { HoldReason } from './admission.ts'
import type { ContributorSettings, ServedTotals } from './settings.ts'

export interface RunningJob {
  job: string
  model: string
  requester: string
  startedAt: number
}

export interface JobDone extends RunningJob {
  ok: boolean
  code?: string
  runMs?: number
  /** The job request frame's bytes. */
  bytesIn?: number
  /** The result frame's bytes. */
  bytesOut?: number
  /** bytesIn + bytesOut. */
  bytes?: number
  receipt?: Receipt
}

export interface ControlsState {
  contributing: boolean
  /** Switched on, not held: taking jobs. */
  active: boolean
  paused: boolean
  holds: HoldReason[]
  /** This tab is the browser's compute tab; undefined when the election is off. */
  leader: boolean | undefined
  crossOriginIsolated: boolean
  onBattery: boolean | undefined
  pressure: string | undefined
  engineStarted: boolean
}

/** What the compute tab publishes to the other tabs of the browser. */
export interface ComputeTabStatus {
  peer: string
  at: number
  active: boolean
  holds: HoldReason[]
  running: RunningJob[]
  totals: ServedTotals
}

/** The events of `peer.controls.events`. */
export interface ControlsEvents {
  /** Settings or state changed (also with every job). */
  change: Event
  /** The served totals changed. */
  totals: Event
  'job-started': CustomEvent<RunningJob>
  'job-done': CustomEvent<JobDone>
  /** The engine was reconfigured (threads, WebGPU): its capabilities may differ. */
  engine: Event
}

export interface Controls {
  readonly events: TypedEventTarget<ControlsEvents>
  settings(): ContributorSettings
  /** Applies and persists a patch; other tabs of the browser follow when the election is on. */
  update(patch: Partial<ContributorSettings>): Promise<ContributorSettings>
  readonly paused: boolean
  /** Stops taking jobs at once; running jobs are handed back (reject 'cancelled') so requesters reissue them. */
  pause(): void
  resume(): void
  state(): ControlsState
  totals(): ServedTotals
  running(): RunningJob[]
  /** The compute tab's status when it is another tab of this browser. */
  computeTab(): ComputeTabStatus | undefined
}
