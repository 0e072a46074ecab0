/**
 * Inference worker: holds verified model bytes and runs them with onnxruntime-web (WebGPU or WASM).
 * The main thread talks to it only through src/compute/bridge.ts.
 */
import { expose, transfer } from 'comlink'
import { CID } from 'multiformats/cid'
import type * as Ort from 'onnxruntime-web'
import { modelCid } from '../src/shared/cid.ts'
import {
  AbortError,
  InferenceError,
  InvalidTensorError,
  ModelIntegrityError,
  UnknownModelError,
} from '../src/shared/errors.ts'
import { elementCount, type NamedTensors, ownedOutput } from '../src/shared/tensor.ts'
import { threadCount } from '../src/shared/threads.ts'
import { type OrtApi, ortFor } from './ort-builds.ts'
import { endRunStop, installRunStop, onRunStop, RUN_MARK, type RunStop } from './ort-stop.ts'

export type Ep = 'webgpu' | 'wasm'
export type InitOptions = {
  numThreads?: number
  allowWebGpu?: boolean
  /**
   * Start the WASM runtime (fetch, compile, thread pool) at init, off the first job's path. For
   * contributors: in a tab that only submits, it competes with page start-up for CPU (default false).
   */
  warm?: boolean
  /**
   * ORT's graph optimisation level of every session (default 'all'). A dispute runner (src/compute/
   * dispute-runner.ts) runs at 'disabled', so its trace has the model's own nodes.
   */
  graphOptimization?: 'disabled' | 'basic' | 'extended' | 'all'
}
export type AdapterSummary = {
  vendor: string
  architecture: string
  description: string
  isFallback: boolean
}
export interface Capabilities {
  eps: Ep[]
  adapter: AdapterSummary | null
  threads: number
  crossOriginIsolated: boolean
  ortVersion: string
}
export type RunRequest = { runId: string; cid: string; inputs: NamedTensors; ep?: Ep | 'auto' }
export type RunResult = { outputs: NamedTensors; ep: Ep; timing: { sessionMs: number; runMs: number } }
/**
 * Posted outside comlink, for the bridge to stop a started run (ORT cannot be interrupted from this
 * thread while it computes): as a run leaves the queue, and as ORT starts computing it, with the
 * run's stop flag in shared memory (workers/ort-stop.ts). Without a flag the bridge terminates the worker.
 */
export type WorkerNote = { runStarted: string } | { runEnded: string } | ({ runStop: string } & RunStop)

/** Minimal WebGPU typing: TS's DOM/WebWorker libs carry no GPU types. */
type GpuAdapterInfo = Partial<Omit<AdapterSummary, 'isFallback'>> & { isFallbackAdapter?: boolean }
type GpuAdapter = { info?: GpuAdapterInfo; isFallbackAdapter?: boolean }
type GpuNavigator = { gpu?: { requestAdapter(): Promise<GpuAdapter | null> } }

const MAX_SESSIONS = 2
const models = new Map<string, Uint8Array>()
type CachedSession = {
  session: Promise<{ ort: OrtApi; session: Ort.InferenceSession }>
  busy: number
  evicted: boolean
}
const sessions = new Map<string, CachedSession>() // key `${cid}|${ep}`, insertion order = LRU order
const webGpuFailed = new Set<string>()
// Runs execute one at a time, in order; sessions are created inside runs, so also one at a time.
let runQueue: Promise<unknown> = Promise.resolve()
const runs = new Map<string, { cancelled: boolean; abort: (e: Error) => void }>()

/** The run now inside ORT, whose stop flag goes to the bridge. */
let computing: string | undefined
installRunStop()
onRunStop((stop) => {
  if (computing) self.postMessage({ runStop: computing, ...stop } satisfies WorkerNote)
})

let initOpts: Required<InitOptions> | undefined
let probed: Promise<GpuAdapter | null> | undefined

const defaultThreads = () =>
  threadCount({ cores: navigator.hardwareConcurrency, isolated: crossOriginIsolated })

function ensureInit(opts: InitOptions = {}): Required<InitOptions> {
  if (initOpts) return initOpts
  initOpts = {
    numThreads: opts.numThreads ?? defaultThreads(),
    allowWebGpu: opts.allowWebGpu ?? true,
    warm: opts.warm ?? false,
    graphOptimization: opts.graphOptimization ?? 'all',
  }
  if (initOpts.warm) void warmUp()
  return initOpts
}

/** The onnxruntime-web build for `ep` (workers/ort-builds.ts), with this worker's thread count. */
const ortBuild = (ep: Ep) => ortFor(ep, crossOriginIsolated ? ensureInit().numThreads : 1)

/** A one-node ONNX graph (Relu on float32[1]), used only to start the WASM runtime. */
const WARM_MODEL = 'CAg6MwoMCgF4EgF5IgRSZWx1EgF3Wg8KAXgSCgoICAESBAoCCAFiDwoBeRIKCggIARIECgIIAUICEBE='

/**
 * The first session pays for fetching and compiling ORT's .wasm and starting its threads (about 1 s
 * here). Doing it at init, queued like a run, takes that off the first job's path: for the build the
 * first job will use ('auto' picks WebGPU only on a real adapter).
 */
let warmed: Promise<void> | undefined
function warmUp(): Promise<void> {
  if (warmed) return warmed
  const bytes = Uint8Array.from(atob(WARM_MODEL), (c) => c.charCodeAt(0))
  const work = runQueue.then(async () => {
    const ep: Ep = usable(await probeAdapter()) ? 'webgpu' : 'wasm'
    const session = await (await ortBuild(ep)).InferenceSession.create(bytes, {
      executionProviders: ['wasm'],
    })
    await session.release()
  })
  warmed = work.catch(() => {}) // a failed warm-up only means the first real session pays instead
  runQueue = warmed
  return warmed
}

function probeAdapter(): Promise<GpuAdapter | null> {
  probed ??= (async () => {
    const gpu = (navigator as unknown as GpuNavigator).gpu
    if (!gpu || !ensureInit().allowWebGpu) return null
    try {
      return await gpu.requestAdapter()
    } catch {
      return null
    }
  })()
  return probed
}

function summarize(adapter: GpuAdapter): AdapterSummary {
  const info = adapter.info ?? {}
  return {
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    description: info.description ?? '',
    // Chromium moved isFallbackAdapter from GPUAdapter to GPUAdapterInfo; read both.
    isFallback: Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter),
  }
}

async function capabilities(): Promise<Capabilities> {
  const opts = ensureInit()
  const adapter = await probeAdapter()
  return {
    eps: adapter ? ['webgpu', 'wasm'] : ['wasm'],
    adapter: adapter ? summarize(adapter) : null,
    threads: crossOriginIsolated ? opts.numThreads : 1,
    crossOriginIsolated,
    // '+wasm': WASM sessions run on the plain build (workers/ort-builds.ts), so exact comparison of
    // results does not group this peer with releases that ran them on the JSEP build.
    ortVersion: `${await ortBuild('wasm').then((ort) => ort.env.versions.web ?? ort.env.versions.common)}+wasm`,
  }
}

/** Normalizes any CID string form to base32 v1; invalid strings pass through and fail lookups. */
function cidKey(cid: string): string {
  try {
    return CID.parse(cid).toV1().toString()
  } catch {
    return cid
  }
}

async function releaseEntry(entry: CachedSession): Promise<void> {
  entry.evicted = true
  if (entry.busy > 0) return // released by the last run that uses it
  await entry.session.then((s) => s.session.release()).catch(() => {})
}

function evictSessions(cid: string): void {
  for (const [key, entry] of sessions) {
    if (key.startsWith(`${cid}|`)) {
      sessions.delete(key)
      void releaseEntry(entry)
    }
  }
}

/** Returns a cached session (bumped to most-recent) or starts creating one. Called only from the run queue. */
function sessionFor(cid: string, ep: Ep): CachedSession {
  const key = `${cid}|${ep}`
  const hit = sessions.get(key)
  if (hit) {
    sessions.delete(key)
    sessions.set(key, hit)
    return hit
  }
  const bytes = models.get(cid)
  if (!bytes) throw new UnknownModelError(`model ${cid} is not loaded`)
  const session = ortBuild(ep).then(async (ort) => ({
    ort,
    session: await ort.InferenceSession.create(bytes, {
      executionProviders: [ep],
      graphOptimizationLevel: ensureInit().graphOptimization,
    }),
  }))
  const entry: CachedSession = { session, busy: 0, evicted: false }
  sessions.set(key, entry)
  session.catch(() => sessions.get(key) === entry && sessions.delete(key))
  while (sessions.size > MAX_SESSIONS) {
    const [oldKey, old] = sessions.entries().next().value!
    sessions.delete(oldKey)
    void releaseEntry(old)
  }
  return entry
}

async function pickEp(cid: string, wanted: Ep | 'auto'): Promise<Ep> {
  if (wanted === 'wasm') return 'wasm'
  const adapter = await probeAdapter()
  if (wanted === 'webgpu') {
    if (!adapter) throw new InferenceError('WebGPU is not available in this worker')
    return 'webgpu'
  }
  return usable(adapter) && !webGpuFailed.has(cid) ? 'webgpu' : 'wasm'
}

/** Whether 'auto' may run on this adapter: SwiftShader-style fallback adapters are ~100x slower than WASM. */
const usable = (adapter: GpuAdapter | null) => adapter != null && !summarize(adapter).isFallback

function validateInputs(
  ort: OrtApi,
  session: Ort.InferenceSession,
  inputs: NamedTensors,
): Record<string, Ort.Tensor> {
  const names = Object.keys(inputs)
  const missing = session.inputNames.filter((n) => !(n in inputs))
  const extra = names.filter((n) => !session.inputNames.includes(n))
  if (missing.length || extra.length) {
    throw new InvalidTensorError(`inputs mismatch: missing [${missing}] unexpected [${extra}]`)
  }
  const feeds: Record<string, Ort.Tensor> = {}
  for (const meta of session.inputMetadata) {
    const t = inputs[meta.name]!
    if (meta.isTensor && meta.type !== t.dtype) {
      throw new InvalidTensorError(`input ${meta.name}: dtype ${t.dtype}, model expects ${meta.type}`)
    }
    if (t.data.length !== elementCount(t.dims)) {
      throw new InvalidTensorError(`input ${meta.name}: ${t.data.length} values for dims [${t.dims}]`)
    }
    // Fixed dims checked here: ORT's own message would come back as a failed run, not a bad input.
    const shape = meta.isTensor ? meta.shape : []
    if (
      shape.length &&
      (shape.length !== t.dims.length ||
        shape.some((d, i) => typeof d === 'number' && d >= 0 && d !== t.dims[i]))
    ) {
      throw new InvalidTensorError(`input ${meta.name}: dims [${t.dims}], the model takes [${shape}]`)
    }
    feeds[meta.name] = new ort.Tensor(t.dtype, t.data, t.dims)
  }
  return feeds
}

function toOutputs(results: Ort.InferenceSession.ReturnType): {
  outputs: NamedTensors
  buffers: ArrayBuffer[]
} {
  const outputs: NamedTensors = {}
  const buffers: ArrayBuffer[] = []
  for (const [name, value] of Object.entries(results)) {
    const t = ownedOutput(name, value)
    outputs[name] = t
    buffers.push(t.data.buffer as ArrayBuffer)
  }
  return { outputs, buffers }
}

async function execute(req: RunRequest, state: { cancelled: boolean }): Promise<RunResult> {
  if (state.cancelled) throw new AbortError(`run ${req.runId} cancelled`)
  self.postMessage({ runStarted: req.runId } satisfies WorkerNote)
  // The caller may have had its answer already (a cancel rejects it at once): this says the thread is free.
  try {
    return await executeStarted(req, state)
  } finally {
    self.postMessage({ runEnded: req.runId } satisfies WorkerNote)
  }
}

async function executeStarted(req: RunRequest, state: { cancelled: boolean }): Promise<RunResult> {
  const cid = cidKey(req.cid)
  if (!models.has(cid)) throw new UnknownModelError(`model ${req.cid} is not loaded`)
  let ep = await pickEp(cid, req.ep ?? 'auto')
  const t0 = performance.now()
  let entry = sessionFor(cid, ep)
  let opened: { ort: OrtApi; session: Ort.InferenceSession }
  try {
    opened = await entry.session
  } catch (err) {
    if (ep !== 'webgpu' || req.ep === 'webgpu') throw new InferenceError(`session: ${(err as Error).message}`)
    webGpuFailed.add(cid) // auto: fall back to WASM and stop trying WebGPU for this model
    ep = 'wasm'
    entry = sessionFor(cid, ep)
    opened = await entry.session.catch((e: Error) => {
      throw new InferenceError(`session: ${e.message}`)
    })
  }
  const sessionMs = performance.now() - t0
  if (state.cancelled) throw new AbortError(`run ${req.runId} cancelled`)
  const { ort, session } = opened
  const feeds = validateInputs(ort, session, req.inputs)
  entry.busy++
  const t1 = performance.now()
  try {
    computing = req.runId
    const results = await session.run(feeds, { logVerbosityLevel: RUN_MARK })
    const runMs = performance.now() - t1
    if (state.cancelled) throw new AbortError(`run ${req.runId} cancelled`)
    const { outputs, buffers } = toOutputs(results)
    return transfer({ outputs, ep, timing: { sessionMs, runMs } }, buffers)
  } catch (err) {
    if ((err as Error).name === AbortError.NAME || (err as Error).name === InferenceError.NAME) throw err
    throw new InferenceError(`run: ${(err as Error).message}`)
  } finally {
    endRunStop() // if ORT's release of the run's options was not caught
    computing = undefined
    entry.busy--
    if (entry.evicted && entry.busy === 0) void releaseEntry(entry)
  }
}

const api = {
  async init(opts: InitOptions = {}): Promise<Capabilities> {
    ensureInit(opts)
    return capabilities()
  },

  capabilities,

  /** Starts the WASM runtime now (once), queued like a run: see InitOptions.warm. */
  async warm(): Promise<void> {
    ensureInit()
    await warmUp()
  },

  /** Verifies `bytes` hash to `cid` before keeping them; sessions are created lazily on first run. */
  async loadModel(cid: string, bytes: Uint8Array): Promise<void> {
    const actual = (await modelCid(bytes)).toString()
    if (actual !== cidKey(cid))
      throw new ModelIntegrityError(`model bytes hash to ${actual}, expected ${cid}`)
    models.set(actual, bytes)
  },

  async run(req: RunRequest): Promise<RunResult> {
    ensureInit()
    if (runs.has(req.runId)) throw new InferenceError(`duplicate runId ${req.runId}`)
    let abort: (e: Error) => void = () => {}
    const aborted = new Promise<never>((_, reject) => {
      abort = reject
    })
    const state = { cancelled: false, abort }
    runs.set(req.runId, state)
    const work = runQueue.then(() => execute(req, state))
    runQueue = work.catch(() => {})
    try {
      return await Promise.race([work, aborted])
    } finally {
      runs.delete(req.runId)
    }
  },

  /** Queued runs are dropped; a started one goes on in ORT unless the bridge terminates the worker. */
  async cancel(runId: string): Promise<boolean> {
    const state = runs.get(runId)
    if (!state) return false
    state.cancelled = true
    state.abort(new AbortError(`run ${runId} cancelled`))
    return true
  },

  /** Creates a model's session ahead of its next run (in a restarted worker), queued like a run. */
  async prepare(cid: string, ep: Ep | 'auto' = 'auto'): Promise<void> {
    ensureInit()
    const key = cidKey(cid)
    const work = runQueue.then(async () => void (await sessionFor(key, await pickEp(key, ep)).session))
    runQueue = work.catch(() => {})
    await work
  },

  /** Drops the model bytes and releases its sessions. */
  async evict(cid: string): Promise<boolean> {
    const key = cidKey(cid)
    evictSessions(key)
    webGpuFailed.delete(key)
    return models.delete(key)
  },
}

export type InferenceApi = typeof api
expose(api)
