/**
 * One onnxruntime-node thread of the Node engine (node/engine-pool.ts). onnxruntime-node creates and
 * runs sessions synchronously on the calling thread, so each run holds this thread, not the main one.
 * The engine decides which sessions this worker keeps: a run says which to release and brings the
 * model's bytes when this worker has no session for it. Messages are handled one at a time, in order.
 *
 * Built as dist-node/ort.worker.mjs by vite.cli.config.ts; from sources it runs under tsx.
 */
import { parentPort, workerData } from 'node:worker_threads'
import * as ort from 'onnxruntime-node'
import { InferenceError, InvalidTensorError } from '../src/shared/errors.ts'
import { type NamedTensors, ownedOutput } from '../src/shared/tensor.ts'
import type { NodeEp } from './ep.ts'
import { checkInputs, type InputMeta, plainMeta } from './ort-inputs.ts'

export interface WorkerInit {
  /** intraOpNumThreads of each session. */
  threads: number
  /** ORT's graph optimisation level of each session (default 'all'; a dispute runner's is 'disabled'). */
  graphOptimization?: GraphOptimization
  /** The execution provider of each session (default 'cpu'; node/ep.ts checked it works here). */
  ep?: NodeEp
}

export type GraphOptimization = 'disabled' | 'basic' | 'extended' | 'all'

export type ToWorker =
  | {
      type: 'run'
      id: number
      cid: string
      /** Sessions to release first (the engine's LRU choice). */
      release: string[]
      /** Present when this worker has no session for `cid`. */
      bytes?: Uint8Array
      inputs: NamedTensors
      /** Test hook (NodeEngine.crashNextRun): die instead of running, as a crashed worker would. */
      crash?: 'throw' | 'exit'
    }
  | { type: 'evict'; cid: string }
  /** Release every session and end; handled after the message in progress, so never inside ORT. */
  | { type: 'exit' }

/** What a worker says besides its answers: for logs and tests (NodeEngineOptions.onEvent). */
export type WorkerNote =
  | { type: 'session'; cid: string; ok: boolean; ms: number; error?: string }
  | { type: 'released'; cid: string }
  /** Just before and after ORT's run; `at` in ms since the epoch (performance.timeOrigin based). */
  | { type: 'started'; cid: string; at: number }
  | { type: 'ended'; cid: string; at: number }

export type RunReply = {
  type: 'done'
  id: number
  /** Whether this worker now holds a session for the run's model. */
  held: boolean
  /** The model's inputs, when this run created its session. */
  inputs?: InputMeta[]
} & (
  | { ok: true; outputs: NamedTensors; sessionMs: number; runMs: number }
  | { ok: false; name: string; message: string }
)

export type FromWorker = WorkerNote | RunReply

/** ORT's own checks of the feeds: the input's fault (InvalidTensorError). */
const ORT_INPUT_ERROR =
  /invalid dimensions for input|invalid rank for input|unexpected input data type|missing in 'feeds'/i

const port = parentPort
const init = workerData as WorkerInit | undefined
const sessions = new Map<string, ort.InferenceSession>()
const now = () => performance.timeOrigin + performance.now()
const post = (msg: FromWorker, transfer: ArrayBuffer[] = []) => port?.postMessage(msg, transfer)

async function release(cid: string): Promise<void> {
  const session = sessions.get(cid)
  if (!session) return
  sessions.delete(cid)
  await session.release().catch(() => {})
  post({ type: 'released', cid })
}

async function run(msg: Extract<ToWorker, { type: 'run' }>): Promise<void> {
  for (const cid of msg.release) await release(cid)
  if (msg.crash === 'exit') process.exit(70)
  if (msg.crash === 'throw') {
    setImmediate(() => {
      throw new Error('crash requested by the test hook')
    })
    return
  }
  const { id, cid } = msg
  const t0 = performance.now()
  let session = sessions.get(cid)
  let inputs: InputMeta[] | undefined
  if (!session) {
    try {
      if (!msg.bytes) throw new Error('no session and no model bytes')
      session = await ort.InferenceSession.create(msg.bytes, {
        executionProviders: [init?.ep ?? 'cpu'],
        intraOpNumThreads: init?.threads ?? 1,
        interOpNumThreads: 1,
        graphOptimizationLevel: init?.graphOptimization ?? 'all',
      })
    } catch (e) {
      const message = (e as Error).message
      post({ type: 'session', cid, ok: false, ms: performance.now() - t0, error: message })
      post({
        type: 'done',
        id,
        held: false,
        ok: false,
        name: 'InferenceError',
        message: `session: ${message}`,
      })
      return
    }
    sessions.set(cid, session)
    inputs = plainMeta(session.inputMetadata as InputMeta[])
    post({ type: 'session', cid, ok: true, ms: performance.now() - t0 })
  }
  const sessionMs = performance.now() - t0
  const held = { held: true, ...(inputs ? { inputs } : {}) }
  try {
    checkInputs(msg.inputs, session.inputMetadata as InputMeta[])
    const feeds: Record<string, ort.Tensor> = {}
    for (const [name, t] of Object.entries(msg.inputs)) feeds[name] = new ort.Tensor(t.dtype, t.data, t.dims)
    post({ type: 'started', cid, at: now() })
    const t1 = performance.now()
    const results = await session.run(feeds).catch((e: Error) => {
      throw ORT_INPUT_ERROR.test(e.message)
        ? new InvalidTensorError(`run: ${e.message}`)
        : new InferenceError(`run: ${e.message}`)
    })
    const runMs = performance.now() - t1
    post({ type: 'ended', cid, at: now() })
    const outputs = toOutputs(results)
    const buffers = new Set(Object.values(outputs).map((t) => t.data.buffer as ArrayBuffer))
    post({ type: 'done', id, ...held, ok: true, outputs, sessionMs, runMs }, [...buffers])
  } catch (e) {
    const err = e as Error
    const name = err.name === 'InvalidTensorError' ? err.name : 'InferenceError'
    const message = err.name === name ? err.message : `run: ${err.message}`
    post({ type: 'done', id, ...held, ok: false, name, message })
  }
}

function toOutputs(results: ort.InferenceSession.ReturnType): NamedTensors {
  const outputs: NamedTensors = {}
  for (const [name, value] of Object.entries(results)) outputs[name] = ownedOutput(name, value)
  return outputs
}

async function handle(msg: ToWorker): Promise<void> {
  if (msg.type === 'run') return run(msg)
  if (msg.type === 'evict') return release(msg.cid)
  for (const cid of [...sessions.keys()]) await release(cid)
  port?.close() // nothing else keeps this thread: it ends
}

let chain = Promise.resolve()
port?.on('message', (msg: ToWorker) => {
  chain = chain.then(() => handle(msg))
})
