/**
 * One inference worker as the bridge (bridge.ts) sees it: its comlink API, the models it was sent,
 * and the runs it started, with the stop flags that end them inside ORT. The bridge decides when a
 * worker starts and goes; this module only spawns one and stops its runs.
 */
import { type Remote, wrap } from 'comlink'
import type {
  InferenceApi,
  InitOptions,
  Capabilities as WorkerCapabilities,
  WorkerNote,
} from '../../workers/inference.worker.ts'
import * as errors from '../shared/errors.ts'

export interface Instance {
  worker: Worker
  api: Remote<InferenceApi>
  ready: Promise<WorkerCapabilities>
  /** Rejects when the worker dies or is stopped, failing every call still waiting on it. */
  dead: Promise<never>
  kill: (reason: Error) => void
  models: Map<string, Promise<void>>
  /** The run the worker said it started and has not answered. */
  started?: string
  /** Runs cancelled before their start was heard of: stopped if it comes. */
  cancelled: Set<string>
  /** Stop flags of the runs inside ORT (workers/ort-stop.ts), and the runs to stop. */
  flags: Map<string, RunFlag>
  stopping: Set<string>
  stopped: boolean
}

/** What the owner of a worker does when it fails, or when a started run does not end when asked. */
export interface InstanceHooks {
  failed(inst: Instance, reason: Error): void
  restart(inst: Instance): void
}

/** How long a run with a stop flag may take to end (ORT checks it between kernels), and one without to get one. */
const FLAG_GRACE_MS = 250
const NOTE_WAIT_MS = 50

type ErrorClass = new (message: string) => Error
const errorsByName = new Map<string, ErrorClass>(
  Object.values(errors)
    .filter((v): v is typeof v & { NAME: string } => typeof v === 'function' && 'NAME' in v)
    .map((cls) => [cls.NAME, cls as unknown as ErrorClass]),
)

/** comlink keeps only name/message/stack: rebuild the named class so callers can branch on it. */
export function rethrow(err: unknown): Error {
  if (!(err instanceof Error)) return new errors.InferenceError(String(err))
  if (err instanceof errors.PeerComputeError) return err
  const Cls = errorsByName.get(err.name)
  return Cls ? new Cls(err.message) : new errors.InferenceError(`${err.name}: ${err.message}`)
}

/** Wraps a fresh worker and starts its runtime's init; the worker's notes keep the run state. */
export function spawnInstance(worker: Worker, init: InitOptions, hooks: InstanceHooks): Instance {
  let kill: (reason: Error) => void = () => {}
  const dead = new Promise<never>((_, reject) => {
    kill = reject
  })
  dead.catch(() => {})
  const api = wrap<InferenceApi>(worker)
  const inst: Instance = {
    worker,
    api,
    dead,
    kill,
    models: new Map(),
    cancelled: new Set(),
    flags: new Map(),
    stopping: new Set(),
    stopped: false,
    ready: api.init(init),
  }
  inst.ready.catch(() => {})
  worker.addEventListener('error', (e) => {
    const detail = e instanceof ErrorEvent && e.message ? `: ${e.message}` : ''
    hooks.failed(inst, new errors.InferenceError(`inference worker failed${detail}`))
  })
  worker.addEventListener('message', (e: MessageEvent<WorkerNote | undefined>) => {
    onNote(inst, e.data, hooks)
  })
  return inst
}

function onNote(inst: Instance, note: WorkerNote | undefined, hooks: InstanceHooks): void {
  if (note && 'runStop' in note) {
    const flag = new Uint8Array(note.buffer, note.at, 1)
    inst.flags.set(note.runStop, { flag, ctl: new Int32Array(note.ctl), seq: note.seq })
    if (inst.stopping.has(note.runStop)) raiseFlag(inst, note.runStop)
  } else if (note && 'runStarted' in note) {
    inst.started = note.runStarted
    if (inst.cancelled.delete(note.runStarted)) stopStarted(inst, note.runStarted, hooks) // cancelled on the way
  } else if (note && 'runEnded' in note) {
    // Not the call's answer: a cancel answers it at once while ORT may still hold the thread.
    if (inst.started === note.runEnded) inst.started = undefined
  }
}

/** Fails the calls waiting on the worker and terminates it. */
export function terminate(inst: Instance, reason: Error): void {
  inst.stopped = true
  inst.kill(reason)
  inst.worker.terminate()
}

/** A run's stop flag, and the word that says whether it is still that run's (workers/ort-stop.ts). */
interface RunFlag {
  flag: Uint8Array
  ctl: Int32Array
  seq: number
}

function raiseFlag(inst: Instance, runId: string): void {
  const f = inst.flags.get(runId)
  // Only while the run is inside ORT: after it, its options' bytes may be the next run's.
  if (!f || Atomics.compareExchange(f.ctl, 0, f.seq, -f.seq) !== f.seq) return
  Atomics.store(f.flag, 0, 1)
  Atomics.store(f.ctl, 0, f.seq)
}

/** By its flag if it is inside ORT; by terminating the worker if it does not end soon after. */
function stopStarted(inst: Instance, runId: string, hooks: InstanceHooks): void {
  inst.stopping.add(runId)
  raiseFlag(inst, runId)
  inst.api.cancel(runId).catch(() => {}) // heard before ORT starts (after session creation): no run
  const t0 = performance.now()
  const check = () => {
    if (inst.started !== runId || inst.stopped) return
    const left = (inst.flags.has(runId) ? FLAG_GRACE_MS : NOTE_WAIT_MS) - (performance.now() - t0)
    if (left > 0) setTimeout(check, left)
    else hooks.restart(inst)
  }
  setTimeout(check, NOTE_WAIT_MS)
}

/** A queued run is dropped by the worker; a started one is stopped. */
export function stopRun(inst: Instance, runId: string, hooks: InstanceHooks): void {
  if (inst.started === runId) {
    stopStarted(inst, runId, hooks)
    return
  }
  inst.cancelled.add(runId)
  inst.api.cancel(runId).catch(() => {})
}

/** Forgets a run's stop state once its call has answered. */
export function runDone(inst: Instance, runId: string): void {
  inst.cancelled.delete(runId)
  inst.flags.delete(runId)
  inst.stopping.delete(runId)
}
