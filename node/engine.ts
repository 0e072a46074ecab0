/**
 * The compute engine of a Node peer (src/compute/bridge.ts InferenceEngine) on onnxruntime-node's CPU
 * EP, in child processes (node/engine-pool.ts): onnxruntime-node creates and runs sessions
 * synchronously, so on the main thread a run would stop libp2p and every timer until it ended, and
 * only a process can be stopped mid-run. Inputs are checked here, before anything is posted; bad
 * ones cost no process time.
 *
 * @example
 * const engine = createNodeEngine({ threads: 2, workers: 4 })
 * await engine.loadModel(cid, bytes)
 * const { outputs } = await engine.run({ cid, inputs: { x } }, AbortSignal.timeout(5000))
 */

import { availableParallelism } from 'node:os'
import type { Logger } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import * as ort from 'onnxruntime-node'
import type { Capabilities, InferenceEngine, RunParams, RunResult } from '../src/compute/bridge.ts'
import { verifyModelBytes } from '../src/models/store.ts'
import { AbortError, InferenceError, UnknownModelError } from '../src/shared/errors.ts'
import { threadCount } from '../src/shared/threads.ts'
import { createPool, type PoolEvent } from './engine-pool.ts'
import type { NodeEp } from './ep.ts'
import type { GraphOptimization } from './ort.worker.ts'
import { checkInputs } from './ort-inputs.ts'

export type { PoolEvent as NodeEngineEvent } from './engine-pool.ts'

export interface NodeEngineOptions {
  /** intraOpNumThreads of each session (default: this machine's cores shared by the workers, at most 4). */
  threads?: number
  /** ORT processes, so runs at once (default 1; a contributor passes its slot count). */
  workers?: number
  /** Sessions each process keeps, least recently run released first (default 2, as the browser worker). */
  maxSessions?: number
  /** ORT's graph optimisation level (default 'all'; a dispute runner's is 'disabled'). */
  graphOptimization?: GraphOptimization
  /** The execution provider (default 'cpu'): one chooseEp (node/ep.ts) found working. */
  ep?: NodeEp
  /** Each process's notes (sessions created and released, runs started and ended), start and end. */
  onEvent?: (e: PoolEvent) => void
  log?: Logger
}

export interface NodeEngine extends InferenceEngine {
  /**
   * After close(): resolves once every ORT process has exited: a busy one is killed, an idle one
   * releases its sessions first (killed if that takes over 2 s).
   */
  closed(): Promise<void>
  /** Test hook: the next run's worker dies instead of running, by an uncaught error or process.exit(70). */
  crashNextRun(how: 'throw' | 'exit'): void
}

/** Any CID string form as base32 v1 (as the worker keys models); invalid strings pass through. */
function cidKey(cid: string): string {
  try {
    return CID.parse(cid).toV1().toString()
  } catch {
    return cid
  }
}

export function createNodeEngine(opts: NodeEngineOptions = {}): NodeEngine {
  const { workers, threads, maxSessions } = sizes(opts)
  const log = opts.log
  const models = new Map<string, Uint8Array>()
  const closing = new AbortController()
  const pool = createPool({
    workers,
    threads,
    maxSessions,
    bytesOf: (cid) => models.get(cid),
    ...(opts.graphOptimization ? { graphOptimization: opts.graphOptimization } : {}),
    ...(opts.ep ? { ep: opts.ep } : {}),
    ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
    ...(log ? { log } : {}),
  })

  return {
    capabilities: async () => nodeCapabilities(threads, opts.ep ?? 'cpu'),

    /** Verifies and keeps the bytes; a process gets them (and creates its session) on its first run of it. */
    async loadModel(cid, bytes, signal) {
      if (closing.signal.aborted) throw new InferenceError('node engine is closed')
      if (signal?.aborted) throw new AbortError('aborted before start')
      const key = cidKey(cid)
      await verifyModelBytes(key, bytes)
      models.set(key, bytes)
    },

    run: (params, signal) =>
      runModel({ pool, models, closing: closing.signal, ep: opts.ep ?? 'cpu' }, params, signal),

    async evict(cid) {
      const key = cidKey(cid)
      pool.evict(key)
      return models.delete(key)
    },

    resident(cid) {
      const bytes = models.get(cidKey(cid))
      return bytes && { bytes: bytes.byteLength }
    },

    /**
     * A contributor starting (or resuming): its ORT processes start now, so its first jobs do not
     * each pay a fork and onnxruntime's start. Sessions still come with each model's first run.
     */
    async warm() {
      if (!closing.signal.aborted) pool.prestart()
    },

    close() {
      if (closing.signal.aborted) return
      closing.abort()
      models.clear()
      pool.close(new AbortError('node engine closed'))
    },

    closed: () => pool.ended(),
    crashNextRun: (how) => pool.crashNextRun(how),
  }
}

/** Processes, each session's threads, and sessions per process, from the options and this machine. */
function sizes(opts: NodeEngineOptions): { workers: number; threads: number; maxSessions: number } {
  const workers = Math.max(1, Math.floor(opts.workers ?? 1)) || 1
  const threads =
    opts.threads === undefined
      ? threadCount({ cores: availableParallelism(), share: workers })
      : Math.max(1, Math.floor(opts.threads)) || 1
  return { workers, threads, maxSessions: Math.max(1, opts.maxSessions ?? 2) }
}

/**
 * GPU kernels are not bit-reproducible across devices, drivers or cuDNN's timed algorithm choice:
 * a GPU Node peer's adapter is its own (a tag drawn per engine), so exact comparison never pairs
 * it with another peer, and tolerance compares it with everyone.
 */
const GPU_TAG = Math.random().toString(16).slice(2, 10)

function nodeCapabilities(threads: number, ep: NodeEp): Capabilities {
  return {
    eps: [ep],
    adapter:
      ep === 'cpu'
        ? null
        : { vendor: ep, architecture: `${ep} ${GPU_TAG}`, description: '', isFallback: false },
    threads,
    crossOriginIsolated: false,
    // '+cpu', '+cuda': native kernels, so exact comparison never groups this peer with WASM ones,
    // nor a CUDA peer with a CPU one.
    ortVersion: `${ort.env.versions.node ?? ort.env.versions.common}+${ep}`,
  }
}

/** What a run needs of the engine: its pool, its verified models, and whether it is closing. */
interface Engine {
  pool: ReturnType<typeof createPool>
  models: Map<string, Uint8Array>
  closing: AbortSignal
  ep: NodeEp
}

async function runModel(e: Engine, params: RunParams, signal?: AbortSignal): Promise<RunResult> {
  if (e.closing.aborted) throw new InferenceError('node engine is closed')
  if (signal?.aborted) throw new AbortError('aborted before start')
  const cid = cidKey(params.cid)
  if (!e.models.has(cid)) throw new UnknownModelError(`model ${params.cid} is not loaded`)
  // Before a model's first session its inputs are not known here: the process checks them too.
  checkInputs(params.inputs, e.pool.metaOf(cid))
  const stop = signal ? AbortSignal.any([signal, e.closing]) : e.closing
  // Serialized (copied) as they are: the caller's stay intact.
  const r = await e.pool.run(cid, params.inputs, stop).catch((err: Error) => {
    if (e.closing.aborted && err.name === 'AbortError') throw new AbortError('node engine closed')
    throw err
  })
  return { outputs: r.outputs, ep: e.ep, timing: { sessionMs: r.sessionMs, runMs: r.runMs } }
}
