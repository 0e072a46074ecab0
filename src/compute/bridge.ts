/**
 * Main-thread handle on the inference worker: starts it lazily, cancels runs on abort, stops it when idle.
 *
 * @example
 * const engine = createInferenceBridge()
 * await engine.loadModel(cid, bytes)
 * const { outputs, ep } = await engine.run({ cid, inputs: { x } }, AbortSignal.timeout(5000))
 */
import { type Remote, wrap } from 'comlink'
import type {
  Capabilities,
  Ep,
  InferenceApi,
  InitOptions,
  RunResult,
} from '../../workers/inference.worker.ts'
import * as errors from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'

export type {
  AdapterSummary,
  Capabilities,
  Ep,
  InitOptions,
  RunResult,
} from '../../workers/inference.worker.ts'

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
  /** Aborting cancels the run in the worker and rejects with AbortError. */
  run(params: RunParams, signal?: AbortSignal): Promise<RunResult>
  evict(cid: string, signal?: AbortSignal): Promise<boolean>
  /** Starts the runtime now, off the first job's path (when a tab starts contributing). Optional. */
  warm?(signal?: AbortSignal): Promise<void>
  close(): void
}

export interface InferenceBridgeOptions {
  init?: InitOptions
  /** Terminate the worker after this long without calls (default 120 s; 0 = never). */
  idleTimeoutMs?: number
  /**
   * Where a restarted worker gets model bytes back from (e.g. the model store). Without it the
   * bridge keeps a reference to every loaded model's bytes so it can re-send them.
   */
  modelSource?: (cid: string) => Promise<Uint8Array | undefined>
  createWorker?: () => Worker
}

interface Instance {
  worker: Worker
  api: Remote<InferenceApi>
  ready: Promise<Capabilities>
  /** Rejects when the worker dies or is stopped, failing every call still waiting on it. */
  dead: Promise<never>
  kill: (reason: Error) => void
  models: Set<string>
}

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
  const retained = new Map<string, Uint8Array>()
  const known = new Set<string>() // cids loaded through this bridge
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
    const inst: Instance = { worker, api, dead, kill, models: new Set(), ready: api.init(opts.init ?? {}) }
    inst.ready.catch(() => {})
    worker.addEventListener('error', (e) => {
      const detail = e instanceof ErrorEvent && e.message ? `: ${e.message}` : ''
      stop(inst, new errors.InferenceError(`inference worker failed${detail}`))
    })
    return inst
  }

  function stop(inst: Instance, reason: Error): void {
    inst.kill(reason)
    inst.worker.terminate()
    if (current === inst) current = undefined
  }

  async function call<T>(
    signal: AbortSignal | undefined,
    fn: (inst: Instance) => Promise<T>,
    onAbort?: (inst: Instance) => void,
  ): Promise<T> {
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
        onAbort?.(inst)
        reject(new errors.AbortError('aborted'))
      }
      signal.addEventListener('abort', onSignal, { once: true })
      detach = () => signal.removeEventListener('abort', onSignal)
    })
    try {
      return await Promise.race([inst.ready.then(() => fn(inst)), inst.dead, aborted])
    } catch (err) {
      throw rethrow(err)
    } finally {
      detach()
      active--
      if (active === 0 && idleMs > 0 && current === inst) {
        idleTimer = setTimeout(() => stop(inst, new errors.AbortError('idle')), idleMs)
      }
    }
  }

  /** A restarted worker has no models: re-send the bytes before the first run that needs them. */
  async function ensureLoaded(inst: Instance, cid: string): Promise<void> {
    if (inst.models.has(cid) || !known.has(cid)) return
    const bytes = retained.get(cid) ?? (await opts.modelSource?.(cid))
    if (!bytes) return // the worker answers UnknownModelError
    await inst.api.loadModel(cid, bytes)
    inst.models.add(cid)
  }

  return {
    capabilities: (signal) => call(signal, (inst) => inst.api.capabilities()),

    warm: (signal) => call(signal, (inst) => inst.api.warm()),

    loadModel: (cid, bytes, signal) =>
      call(signal, async (inst) => {
        await inst.api.loadModel(cid, bytes) // structured clone: the caller keeps its buffer
        inst.models.add(cid)
        known.add(cid)
        if (!opts.modelSource) retained.set(cid, bytes)
      }),

    run: (params, signal) => {
      const runId = params.runId ?? `run-${Date.now().toString(36)}-${++seq}`
      return call(
        signal,
        async (inst) => {
          await ensureLoaded(inst, params.cid)
          if (signal?.aborted) throw new errors.AbortError('aborted') // never post a run already cancelled
          return inst.api.run({ ...params, runId })
        },
        (inst) => void inst.api.cancel(runId).catch(() => {}),
      )
    },

    evict: async (cid, signal) => {
      const had = known.delete(cid)
      retained.delete(cid)
      if (!current) return had
      return call(signal, async (inst) => {
        inst.models.delete(cid)
        return (await inst.api.evict(cid)) || had
      })
    },

    close: () => {
      closed = true
      clearTimeout(idleTimer)
      if (current) stop(current, new errors.AbortError('inference bridge closed'))
    },
  }
}
