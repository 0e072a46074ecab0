/**
 * The compute engine of a Node peer (src/compute/bridge.ts InferenceEngine) on onnxruntime-node's CPU
 * EP. onnxruntime-node 1.30 runs a session (and creates one) synchronously on the calling thread, and
 * its binding ignores RunOptions.terminate: a run that started cannot be stopped. So runs go one at a
 * time through a queue that drops aborted ones before they start, and an abort during a run rejects
 * at once (as soon as the thread is free) and the result is discarded.
 *
 * @example
 * const engine = createNodeEngine({ threads: 2 })
 * await engine.loadModel(cid, bytes)
 * const { outputs } = await engine.run({ cid, inputs: { x } }, AbortSignal.timeout(5000))
 */
import { availableParallelism } from 'node:os'
import type { Logger } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import * as ort from 'onnxruntime-node'
import type { Capabilities, InferenceEngine, RunResult } from '../src/compute/bridge.ts'
import { verifyModelBytes } from '../src/models/store.ts'
import { AbortError, InferenceError, InvalidTensorError, UnknownModelError } from '../src/shared/errors.ts'
import {
  ARRAY_TYPES,
  DTYPES,
  type DType,
  elementCount,
  type NamedTensors,
  type TensorData,
} from '../src/shared/tensor.ts'

export interface NodeEngineOptions {
  /** intraOpNumThreads of each session (default: up to 4 of this machine's cores). */
  threads?: number
  /** Sessions kept resident, least recently run released first (default 2, as the browser worker). */
  maxSessions?: number
  log?: Logger
}

type Entry = { session: Promise<ort.InferenceSession>; busy: number; evicted: boolean }

/** ORT's own checks of the feeds: the input's fault, as in the worker's checks (InvalidTensorError). */
const ORT_INPUT_ERROR =
  /invalid dimensions for input|invalid rank for input|unexpected input data type|missing in 'feeds'/i

/** Any CID string form as base32 v1 (as the worker keys models); invalid strings pass through. */
function cidKey(cid: string): string {
  try {
    return CID.parse(cid).toV1().toString()
  } catch {
    return cid
  }
}

export function createNodeEngine(opts: NodeEngineOptions = {}): InferenceEngine {
  const threads = Math.max(1, Math.floor(opts.threads ?? Math.min(4, availableParallelism()))) || 1
  const maxSessions = Math.max(1, opts.maxSessions ?? 2)
  const log = opts.log
  const models = new Map<string, Uint8Array>()
  const sessions = new Map<string, Entry>() // insertion order = LRU order
  const closing = new AbortController()
  // Session creation and runs, one at a time: ORT holds the thread for each anyway.
  let queue: Promise<unknown> = Promise.resolve()

  async function release(entry: Entry): Promise<void> {
    entry.evicted = true
    if (entry.busy > 0) return // the run using it releases it
    await entry.session.then((s) => s.release()).catch(() => {})
  }

  function drop(cid: string): void {
    const entry = sessions.get(cid)
    if (!entry) return
    sessions.delete(cid)
    void release(entry)
  }

  /** A resident session (now most recent), or a new one. Called only from the queue. */
  function sessionFor(cid: string, bytes: Uint8Array): Entry {
    const hit = sessions.get(cid)
    if (hit) {
      sessions.delete(cid)
      sessions.set(cid, hit)
      return hit
    }
    const session = ort.InferenceSession.create(bytes, {
      executionProviders: ['cpu'],
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
    })
    const entry: Entry = { session, busy: 0, evicted: false }
    sessions.set(cid, entry)
    session.then(
      () => log?.('session for %s created (%d threads)', cid, threads),
      (e: Error) => {
        log?.error('session for %s failed: %s', cid, e.message)
        if (sessions.get(cid) === entry) sessions.delete(cid)
      },
    )
    for (const old of sessions.keys()) if (sessions.size > maxSessions) drop(old)
    return entry
  }

  async function execute(cid: string, inputs: NamedTensors, signal: AbortSignal): Promise<RunResult> {
    if (signal.aborted) throw new AbortError('aborted before start')
    const bytes = models.get(cid)
    if (!bytes) throw new UnknownModelError(`model ${cid} is not loaded`)
    const t0 = performance.now()
    const entry = sessionFor(cid, bytes)
    entry.busy++
    try {
      const session = await entry.session.catch((e: Error) => {
        throw new InferenceError(`session: ${e.message}`)
      })
      const sessionMs = performance.now() - t0
      if (signal.aborted) throw new AbortError('aborted before the run')
      const feeds = toFeeds(session, inputs)
      const t1 = performance.now()
      const results = await session.run(feeds).catch((e: Error) => {
        throw ORT_INPUT_ERROR.test(e.message)
          ? new InvalidTensorError(`run: ${e.message}`)
          : new InferenceError(`run: ${e.message}`)
      })
      const runMs = performance.now() - t1
      return { outputs: toOutputs(results), ep: 'cpu', timing: { sessionMs, runMs } }
    } finally {
      entry.busy--
      if (entry.evicted && entry.busy === 0) void release(entry)
    }
  }

  return {
    async capabilities() {
      return {
        eps: ['cpu'],
        adapter: null,
        threads,
        crossOriginIsolated: false,
        // '+cpu': native CPU kernels, so exact comparison of results does not group this peer with WASM ones.
        ortVersion: `${ort.env.versions.node ?? ort.env.versions.common}+cpu`,
      } satisfies Capabilities
    },

    /** Verifies and keeps the bytes; the session is created on the first run (and again after LRU eviction). */
    async loadModel(cid, bytes, signal) {
      if (closing.signal.aborted) throw new InferenceError('node engine is closed')
      if (signal?.aborted) throw new AbortError('aborted before start')
      const key = cidKey(cid)
      await verifyModelBytes(key, bytes)
      models.set(key, bytes)
    },

    async run(params, signal) {
      if (closing.signal.aborted) throw new InferenceError('node engine is closed')
      if (signal?.aborted) throw new AbortError('aborted before start')
      const cid = cidKey(params.cid)
      if (!models.has(cid)) throw new UnknownModelError(`model ${params.cid} is not loaded`)
      const stop = signal ? AbortSignal.any([signal, closing.signal]) : closing.signal
      const work = queue.then(() => execute(cid, params.inputs, stop))
      queue = work.catch(() => {})
      let detach = () => {}
      const aborted = new Promise<never>((_, reject) => {
        const onAbort = () => {
          log?.('run of %s aborted%s', cid, closing.signal.aborted ? ': engine closed' : '')
          reject(new AbortError(closing.signal.aborted ? 'node engine closed' : 'aborted'))
        }
        stop.addEventListener('abort', onAbort, { once: true })
        detach = () => stop.removeEventListener('abort', onAbort)
      })
      try {
        const result = await Promise.race([work, aborted])
        if (stop.aborted) throw new AbortError('aborted') // the result is discarded
        return result
      } finally {
        detach()
      }
    },

    async evict(cid) {
      const key = cidKey(cid)
      drop(key)
      return models.delete(key)
    },

    // No warm(): onnxruntime-node has nothing to fetch or compile ahead of the first session.

    close() {
      closing.abort()
      models.clear()
      for (const cid of [...sessions.keys()]) drop(cid)
    },
  }
}

/** Checks `inputs` against the session's inputs (as the browser worker does) and wraps them as ORT tensors. */
function toFeeds(session: ort.InferenceSession, inputs: NamedTensors): Record<string, ort.Tensor> {
  const names = Object.keys(inputs)
  const missing = session.inputNames.filter((n) => !(n in inputs))
  const extra = names.filter((n) => !session.inputNames.includes(n))
  if (missing.length || extra.length) {
    throw new InvalidTensorError(`inputs mismatch: missing [${missing}] unexpected [${extra}]`)
  }
  const feeds: Record<string, ort.Tensor> = {}
  for (const meta of session.inputMetadata) {
    const t = inputs[meta.name]!
    if (meta.isTensor && meta.type !== t.dtype) {
      throw new InvalidTensorError(`input ${meta.name}: dtype ${t.dtype}, model expects ${meta.type}`)
    }
    if (!DTYPES.includes(t.dtype) || !(t.data instanceof ARRAY_TYPES[t.dtype])) {
      throw new InvalidTensorError(`input ${meta.name}: data does not hold ${t.dtype}`)
    }
    if (!t.dims.every((d) => Number.isSafeInteger(d) && d >= 0) || t.data.length !== elementCount(t.dims)) {
      throw new InvalidTensorError(`input ${meta.name}: ${t.data.length} values for dims [${t.dims}]`)
    }
    // Fixed dims checked here: ORT's own message would read as a failed run, not a bad input.
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

function toOutputs(results: ort.InferenceSession.ReturnType): NamedTensors {
  const outputs: NamedTensors = {}
  for (const [name, value] of Object.entries(results)) {
    const dtype = value.type as DType
    if (!DTYPES.includes(dtype)) throw new InferenceError(`output ${name}: unsupported dtype ${value.type}`)
    let data = value.data as TensorData
    // A tensor owns its whole buffer, as the worker's do: encoders may send `data.buffer` as is.
    if (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength) data = data.slice()
    outputs[name] = { dtype, dims: [...value.dims], data }
  }
  return outputs
}
