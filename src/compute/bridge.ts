/**
 * Main-thread handle on the inference worker: starts it lazily, stops it when idle, and stops a run on
 * abort: a queued one is dropped; one inside ORT by its stop flag (ORT ends the run at the next
 * kernel); one that does not end so (creating its session, or no flag) by terminating the worker,
 * whose fresh successor gets the models back and re-creates their sessions ahead of the next run.
 * Which models a worker should hold is its residency's (residency.ts), shared by the bridges of one
 * compute service; each bridge knows only what its current worker was sent.
 *
 * @example
 * const engine = createInferenceBridge()
 * await engine.loadModel(cid, bytes)
 * const { outputs, ep } = await engine.run({ cid, inputs: { x } }, AbortSignal.timeout(5000))
 */
import type {
  Ep,
  InitOptions,
  Capabilities as WorkerCapabilities,
  RunResult as WorkerRunResult,
} from '../../workers/inference.worker.ts'
import * as errors from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import {
  type Instance,
  type InstanceHooks,
  rethrow,
  runDone,
  spawnInstance,
  stopRun,
  terminate,
} from './bridge-worker.ts'
import { createResidency, type Residency, type ResidentModel } from './residency.ts'

export type { AdapterSummary, Ep, InitOptions } from '../../workers/inference.worker.ts'

/** Where an engine runs: the worker's EPs, or onnxruntime-node's CPU, CUDA or WebGPU EP (node/engine.ts). */
export type EngineEp = Ep | 'cpu' | 'cuda'
export type Capabilities = Omit<WorkerCapabilities, 'eps'> & { eps: EngineEp[] }
export type RunResult = Omit<WorkerRunResult, 'ep'> & { ep: EngineEp }

export interface RunParams {
  cid: string
  inputs: NamedTensors
  ep?: Ep | 'auto'
  /** Defaults to a fresh id; only needed to correlate logs. */
  runId?: string
}

/** What the rest of the app needs from a compute engine; the worker bridge is one implementation. */
export interface InferenceEngine {
  capabilities(signal?: AbortSignal): Promise<Capabilities>
  /** Rejects with ModelIntegrityError unless `bytes` hash to `cid`. */
  loadModel(cid: string, bytes: Uint8Array, signal?: AbortSignal): Promise<void>
  /** Aborting stops the run in the worker (terminating it if the run started) and rejects with AbortError. */
  run(params: RunParams, signal?: AbortSignal): Promise<RunResult>
  /** Unloads the model from every worker that holds it; whether any did. */
  evict(cid: string, signal?: AbortSignal): Promise<boolean>
  /** Whether (and how large) a model is loaded: a run needs no loadModel first. Optional. */
  resident?(cid: string): ResidentModel | undefined
  /** The models whose sessions `warm()` re-creates (those run last); empty before a first run. Optional. */
  sessions?(): string[]
  /**
   * Starts the runtime now, off the first job's path (when a tab starts or resumes contributing), and
   * re-creates the sessions a terminated worker held. Optional.
   */
  warm?(signal?: AbortSignal): Promise<void>
  close(): void
}

export interface InferenceBridgeOptions {
  init?: InitOptions
  /** Terminate the worker after this long without calls (default 120 s; 0 = never). */
  idleTimeoutMs?: number
  /** The models its worker should hold, shared with other bridges (default: one of its own). */
  residency?: Residency
  /** Without `residency`: the source of the bridge's own (see ResidencyOptions.source). */
  modelSource?: (cid: string) => Promise<Uint8Array | undefined>
  createWorker?: () => Worker
  /**
   * After a started run was stopped by terminating the worker: whether to start a fresh one and
   * re-create its sessions at once (default: yes). If not (a paused contributor), `warm()` does it.
   */
  restartNow?: () => boolean
}

/** Sessions the worker keeps (workers/inference.worker.ts MAX_SESSIONS): the ones a restart re-creates. */
const RECENT_MODELS = 2

/** Why the calls on a terminated worker end: they go on in the fresh one. */
const RESTARTED = new errors.AbortError('inference worker restarted')

/** A bridge's state, shared by the steps below: which worker is current, and when it goes idle. */
interface Bridge {
  opts: InferenceBridgeOptions
  idleMs: number
  residency: Residency
  /** The models run last, least recent first, with the EP they ran on: their sessions survive a restart. */
  recent: Map<string, Ep | 'auto'>
  current: Instance | undefined
  active: number
  idleTimer: ReturnType<typeof setTimeout> | undefined
  closed: boolean
  seq: number
  hooks: InstanceHooks
}

export function createInferenceBridge(opts: InferenceBridgeOptions = {}): InferenceEngine {
  const residency = opts.residency ?? createResidency(opts.modelSource ? { source: opts.modelSource } : {})
  const b: Bridge = {
    opts,
    idleMs: opts.idleTimeoutMs ?? 120_000,
    residency,
    recent: new Map(),
    current: undefined,
    active: 0,
    idleTimer: undefined,
    closed: false,
    seq: 0,
    hooks: {
      failed: (inst, reason) => stop(b, inst, reason),
      restart: (inst) => restart(b, inst),
    },
  }
  /** `residency.drop` reaches here: the model leaves this bridge's worker, if one is running. */
  const detach = residency.attach((cid, signal) => evictHere(b, cid, signal))

  return {
    capabilities: (signal) => call(b, signal, (inst) => inst.api.capabilities()),
    warm: (signal) => warm(b, signal),
    loadModel: (cid, bytes, signal) => loadModel(b, cid, bytes, signal),
    run: (params, signal) => run(b, params, signal),
    evict: (cid, signal) => residency.drop(cid, signal),
    resident: (cid) => residency.resident(cid),
    sessions: () => [...b.recent.keys()],
    close: () => {
      b.closed = true
      detach()
      clearTimeout(b.idleTimer)
      if (b.current) stop(b, b.current, new errors.AbortError('inference bridge closed'))
    },
  }
}

function known(b: Bridge, cid: string): boolean {
  return b.residency.resident(cid) !== undefined
}

function start(b: Bridge): Instance {
  const worker =
    b.opts.createWorker?.() ??
    new Worker(new URL('../../workers/inference.worker.ts', import.meta.url), { type: 'module' })
  return spawnInstance(worker, b.opts.init ?? {}, b.hooks)
}

function stop(b: Bridge, inst: Instance, reason: Error): void {
  terminate(inst, reason)
  if (b.current === inst) b.current = undefined
}

/** Stops a started run: the worker goes, its other calls go on in a fresh one, warmed now or by `warm()`. */
function restart(b: Bridge, inst: Instance): void {
  if (inst.stopped) return
  stop(b, inst, RESTARTED)
  if (!b.closed && (b.opts.restartNow?.() ?? true)) warm(b).catch(() => {})
}

async function call<T>(
  b: Bridge,
  signal: AbortSignal | undefined,
  fn: (inst: Instance) => Promise<T>,
  onAbort?: (inst: Instance) => void,
): Promise<T> {
  for (;;) {
    if (b.closed) throw new errors.InferenceError('inference bridge is closed')
    if (signal?.aborted) throw new errors.AbortError('aborted before start')
    b.current ??= start(b)
    const inst = b.current
    b.active++
    clearTimeout(b.idleTimer)
    let detach = () => {}
    const aborted = new Promise<never>((_, reject) => {
      if (!signal) return
      const onSignal = () => {
        reject(new errors.AbortError('aborted'))
        onAbort?.(inst)
      }
      signal.addEventListener('abort', onSignal, { once: true })
      detach = () => signal.removeEventListener('abort', onSignal)
    })
    try {
      return await Promise.race([inst.ready.then(() => fn(inst)), inst.dead, aborted])
    } catch (err) {
      if (err !== RESTARTED) throw rethrow(err)
      if (signal?.aborted) throw new errors.AbortError('aborted')
      // another call's run was stopped: this one goes on in the fresh worker
    } finally {
      detach()
      b.active--
      if (b.active === 0 && b.idleMs > 0 && b.current === inst) {
        b.idleTimer = setTimeout(() => stop(b, inst, new errors.AbortError('idle')), b.idleMs)
      }
    }
  }
}

/** A restarted worker has no models: re-send the bytes before the first call that needs them. */
function ensureLoaded(b: Bridge, inst: Instance, cid: string): Promise<void> {
  if (!known(b, cid)) return Promise.resolve()
  let loading = inst.models.get(cid)
  if (!loading) {
    loading = (async () => {
      const bytes = await b.residency.bytes(cid)
      if (bytes) await inst.api.loadModel(cid, bytes) // without bytes the worker answers UnknownModelError
    })()
    inst.models.set(cid, loading)
    loading.catch(() => inst.models.get(cid) === loading && inst.models.delete(cid))
  }
  return loading
}

function remember(b: Bridge, cid: string, ep: Ep | 'auto'): void {
  b.recent.delete(cid)
  b.recent.set(cid, ep)
  for (const old of b.recent.keys()) if (b.recent.size > RECENT_MODELS) b.recent.delete(old)
}

/** The runtime, then the sessions of the models run last (no-ops where the worker has them). */
function warm(b: Bridge, signal?: AbortSignal): Promise<void> {
  return call(b, signal, async (inst) => {
    await inst.api.warm()
    for (const [cid, ep] of b.recent) {
      await ensureLoaded(b, inst, cid)
      await inst.api.prepare(cid, ep).catch(() => {}) // its run will say what is wrong
    }
  })
}

async function evictHere(b: Bridge, cid: string, signal?: AbortSignal): Promise<boolean> {
  b.recent.delete(cid)
  if (!b.current || b.closed) return false // no worker: nothing to remove, and none is started for it
  return call(b, signal, async (inst) => {
    inst.models.delete(cid)
    return inst.api.evict(cid)
  })
}

function loadModel(b: Bridge, cid: string, bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
  const gen = b.residency.generation(cid) // as asked: a drop from now on wins
  return call(b, signal, async (inst) => {
    await inst.api.loadModel(cid, bytes) // structured clone: the caller keeps its buffer
    // Dropped while it loaded (the model was deleted): the worker forgets it again, nothing records it.
    if (b.residency.generation(cid) !== gen) {
      await inst.api.evict(cid)
      return
    }
    inst.models.set(cid, Promise.resolve())
    b.residency.add(cid, bytes)
  })
}

function run(b: Bridge, params: RunParams, signal?: AbortSignal): Promise<RunResult> {
  const runId = params.runId ?? `run-${Date.now().toString(36)}-${++b.seq}`
  if (known(b, params.cid) && !b.recent.has(params.cid)) remember(b, params.cid, params.ep ?? 'auto')
  return call(
    b,
    signal,
    async (inst) => {
      try {
        await ensureLoaded(b, inst, params.cid)
        if (signal?.aborted) throw new errors.AbortError('aborted') // never post a run already cancelled
        const result = await inst.api.run({ ...params, runId })
        if (known(b, params.cid)) remember(b, params.cid, result.ep)
        return result
      } finally {
        runDone(inst, runId)
      }
    },
    (inst) => stopRun(inst, runId, b.hooks),
  )
}
