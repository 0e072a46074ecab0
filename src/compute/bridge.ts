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
import { type Remote, wrap } from 'comlink'
import type {
  Ep,
  InferenceApi,
  InitOptions,
  Capabilities as WorkerCapabilities,
  WorkerNote,
  RunResult as WorkerRunResult,
} from '../../workers/inference.worker.ts'
import * as errors from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { createResidency, type Residency, type ResidentModel } from './residency.ts'

export type { AdapterSummary, Ep, InitOptions } from '../../workers/inference.worker.ts'

/** Where an engine runs: the worker's EPs, or onnxruntime-node's CPU EP (node/engine.ts). */
export type EngineEp = Ep | 'cpu'
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

interface Instance {
  worker: Worker
  api: Remote<InferenceApi>
  ready: Promise<Capabilities>
  /** Rejects when the worker dies or is stopped, failing every call still waiting on it. */
  dead: Promise<never>
  kill: (reason: Error) => void
  models: Map<string, Promise<void>>
  /** The run the worker said it started and has not answered. */
  started?: string
  /** Runs cancelled before their start was heard of: stopped if it comes. */
  cancelled: Set<string>
  /** Stop flags of the runs inside ORT (workers/ort-stop.ts), and the runs to stop. */
  flags: Map<string, Uint8Array>
  stopping: Set<string>
  stopped: boolean
}

/** How long a run with a stop flag may take to end (ORT checks it between kernels), and one without to get one. */
const FLAG_GRACE_MS = 250
const NOTE_WAIT_MS = 50

/** Why the calls on a terminated worker end: they go on in the fresh one. */
const RESTARTED = new errors.AbortError('inference worker restarted')

type ErrorClass = new (message: string) => Error
const errorsByName = new Map<string, ErrorClass>(
  Object.values(errors)
    .filter((v): v is typeof v & { NAME: string } => typeof v === 'function' && 'NAME' in v)
    .map((cls) => [cls.NAME, cls as unknown as ErrorClass]),
)

/** comlink keeps only name/message/stack: rebuild the named class so callers can branch on it. */
function rethrow(err: unknown): Error {
  if (!(err instanceof Error)) return new errors.InferenceError(String(err))
  if (err instanceof errors.PeerComputeError) return err
  const Cls = errorsByName.get(err.name)
  return Cls ? new Cls(err.message) : new errors.InferenceError(`${err.name}: ${err.message}`)
}

export function createInferenceBridge(opts: InferenceBridgeOptions = {}): InferenceEngine {
  const idleMs = opts.idleTimeoutMs ?? 120_000
  const residency = opts.residency ?? createResidency(opts.modelSource ? { source: opts.modelSource } : {})
  const known = (cid: string) => residency.resident(cid) !== undefined
  /** The models run last, least recent first, with the EP they ran on: their sessions survive a restart. */
  const recent = new Map<string, Ep | 'auto'>()
  let current: Instance | undefined
  let active = 0
  let idleTimer: ReturnType<typeof setTimeout> | undefined
  let closed = false
  let seq = 0

  function start(): Instance {
    const worker =
      opts.createWorker?.() ??
      new Worker(new URL('../../workers/inference.worker.ts', import.meta.url), { type: 'module' })
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
      ready: api.init(opts.init ?? {}),
    }
    inst.ready.catch(() => {})
    worker.addEventListener('error', (e) => {
      const detail = e instanceof ErrorEvent && e.message ? `: ${e.message}` : ''
      stop(inst, new errors.InferenceError(`inference worker failed${detail}`))
    })
    worker.addEventListener('message', (e: MessageEvent<WorkerNote | undefined>) => {
      const note = e.data
      if (note && 'runStop' in note) {
        inst.flags.set(note.runStop, new Uint8Array(note.buffer, note.at, 1))
        if (inst.stopping.has(note.runStop)) raiseFlag(inst, note.runStop)
      } else if (note && 'runStarted' in note) {
        inst.started = note.runStarted
        if (inst.cancelled.delete(note.runStarted)) stopStarted(inst, note.runStarted) // cancelled on the way
      } else if (note && 'runEnded' in note) {
        // Not the call's answer: a cancel answers it at once while ORT may still hold the thread.
        if (inst.started === note.runEnded) inst.started = undefined
      }
    })
    return inst
  }

  function stop(inst: Instance, reason: Error): void {
    inst.stopped = true
    inst.kill(reason)
    inst.worker.terminate()
    if (current === inst) current = undefined
  }

  /** Stops a started run: the worker goes, its other calls go on in a fresh one, warmed now or by `warm()`. */
  function restart(inst: Instance): void {
    if (inst.stopped) return
    stop(inst, RESTARTED)
    if (!closed && (opts.restartNow?.() ?? true)) warm().catch(() => {})
  }

  async function call<T>(
    signal: AbortSignal | undefined,
    fn: (inst: Instance) => Promise<T>,
    onAbort?: (inst: Instance) => void,
  ): Promise<T> {
    for (;;) {
      if (closed) throw new errors.InferenceError('inference bridge is closed')
      if (signal?.aborted) throw new errors.AbortError('aborted before start')
      current ??= start()
      const inst = current
      active++
      clearTimeout(idleTimer)
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
        active--
        if (active === 0 && idleMs > 0 && current === inst) {
          idleTimer = setTimeout(() => stop(inst, new errors.AbortError('idle')), idleMs)
        }
      }
    }
  }

  /** A restarted worker has no models: re-send the bytes before the first call that needs them. */
  function ensureLoaded(inst: Instance, cid: string): Promise<void> {
    if (!known(cid)) return Promise.resolve()
    let loading = inst.models.get(cid)
    if (!loading) {
      loading = (async () => {
        const bytes = await residency.bytes(cid)
        if (bytes) await inst.api.loadModel(cid, bytes) // without bytes the worker answers UnknownModelError
      })()
      inst.models.set(cid, loading)
      loading.catch(() => inst.models.get(cid) === loading && inst.models.delete(cid))
    }
    return loading
  }

  const remember = (cid: string, ep: Ep | 'auto') => {
    recent.delete(cid)
    recent.set(cid, ep)
    for (const old of recent.keys()) if (recent.size > RECENT_MODELS) recent.delete(old)
  }

  /** The runtime, then the sessions of the models run last (no-ops where the worker has them). */
  const warm = (signal?: AbortSignal) =>
    call(signal, async (inst) => {
      await inst.api.warm()
      for (const [cid, ep] of recent) {
        await ensureLoaded(inst, cid)
        await inst.api.prepare(cid, ep).catch(() => {}) // its run will say what is wrong
      }
    })

  const raiseFlag = (inst: Instance, runId: string) => {
    const flag = inst.flags.get(runId)
    if (flag) Atomics.store(flag, 0, 1)
  }

  /** By its flag if it is inside ORT; by terminating the worker if it does not end soon after. */
  function stopStarted(inst: Instance, runId: string): void {
    inst.stopping.add(runId)
    raiseFlag(inst, runId)
    inst.api.cancel(runId).catch(() => {}) // heard before ORT starts (after session creation): no run
    const t0 = performance.now()
    const check = () => {
      if (inst.started !== runId || inst.stopped) return
      const left = (inst.flags.has(runId) ? FLAG_GRACE_MS : NOTE_WAIT_MS) - (performance.now() - t0)
      if (left > 0) setTimeout(check, left)
      else restart(inst)
    }
    setTimeout(check, NOTE_WAIT_MS)
  }

  /** A queued run is dropped by the worker; a started one is stopped. */
  function stopRun(inst: Instance, runId: string): void {
    if (inst.started === runId) {
      stopStarted(inst, runId)
      return
    }
    inst.cancelled.add(runId)
    inst.api.cancel(runId).catch(() => {})
  }

  /** `residency.drop` reaches here: the model leaves this bridge's worker, if one is running. */
  const detach = residency.attach(async (cid, signal) => {
    recent.delete(cid)
    if (!current || closed) return false // no worker: nothing to remove, and none is started for it
    return call(signal, async (inst) => {
      inst.models.delete(cid)
      return inst.api.evict(cid)
    })
  })

  return {
    capabilities: (signal) => call(signal, (inst) => inst.api.capabilities()),

    warm,

    loadModel: (cid, bytes, signal) => {
      const gen = residency.generation(cid) // as asked: a drop from now on wins
      return call(signal, async (inst) => {
        await inst.api.loadModel(cid, bytes) // structured clone: the caller keeps its buffer
        // Dropped while it loaded (the model was deleted): the worker forgets it again, nothing records it.
        if (residency.generation(cid) !== gen) {
          await inst.api.evict(cid)
          return
        }
        inst.models.set(cid, Promise.resolve())
        residency.add(cid, bytes)
      })
    },

    run: (params, signal) => {
      const runId = params.runId ?? `run-${Date.now().toString(36)}-${++seq}`
      if (known(params.cid) && !recent.has(params.cid)) remember(params.cid, params.ep ?? 'auto')
      return call(
        signal,
        async (inst) => {
          try {
            await ensureLoaded(inst, params.cid)
            if (signal?.aborted) throw new errors.AbortError('aborted') // never post a run already cancelled
            const result = await inst.api.run({ ...params, runId })
            if (known(params.cid)) remember(params.cid, result.ep)
            return result
          } finally {
            inst.cancelled.delete(runId)
            inst.flags.delete(runId)
            inst.stopping.delete(runId)
          }
        },
        (inst) => stopRun(inst, runId),
      )
    },

    evict: (cid, signal) => residency.drop(cid, signal),
    resident: (cid) => residency.resident(cid),
    sessions: () => [...recent.keys()],

    close: () => {
      closed = true
      detach()
      clearTimeout(idleTimer)
      if (current) stop(current, new errors.AbortError('inference bridge closed'))
    },
  }
}
