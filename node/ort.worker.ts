/**
 * One onnxruntime-node process of the Node engine (node/engine-pool.ts forks it, IPC with advanced
 * serialization). onnxruntime-node runs a session synchronously and ignores RunOptions.terminate, so
 * a run cannot be stopped from inside: a process can be, by SIGKILL, and that is how an aborted run
 * ends (a thread could not: terminating one inside ORT aborts the whole process).
 * The engine decides which sessions this process keeps: a run says which to release and brings the
 * model's bytes when this process has no session for it. Messages are handled one at a time, in order.
 * It ends when its parent does: on IPC disconnect, or (while ORT holds the main thread and no event
 * is seen) by a watchdog thread that sees it was re-parented.
 *
 * Built as dist-node/ort.worker.mjs by vite.cli.config.ts; from sources it runs under tsx's loader.
 */
import { Worker } from 'node:worker_threads'
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
      /** Present when this process has no session for `cid`. */
      bytes?: Uint8Array
      inputs: NamedTensors
      /** Test hook (NodeEngine.crashNextRun): die instead of running, as a crashed process would. */
      crash?: 'throw' | 'exit'
    }
  | { type: 'evict'; cid: string }
  /** Release every session and exit with code 0: how an idle process is closed (a busy one is killed). */
  | { type: 'exit' }

/** What a process says besides its answers: for logs and tests (NodeEngineOptions.onEvent). */
export type WorkerNote =
  | { type: 'session'; cid: string; ok: boolean; ms: number; error?: string }
  | { type: 'released'; cid: string }
  /** Just before and after ORT's run; `at` in ms since the epoch (performance.timeOrigin based). */
  | { type: 'started'; cid: string; at: number }
  | { type: 'ended'; cid: string; at: number }

export type RunReply = {
  type: 'done'
  id: number
  /** Whether this process now holds a session for the run's model. */
  held: boolean
  /** The model's inputs, when this run created its session. */
  inputs?: InputMeta[]
} & (
  | { ok: true; outputs: NamedTensors; sessionMs: number; runMs: number }
  | { ok: false; name: string; message: string }
)

/** An uncaught error, just before this process exits with code 1: the cause its run fails with. */
export type WorkerFailure = { type: 'failed'; message: string }

export type FromWorker = WorkerNote | RunReply | WorkerFailure

/** ORT's own checks of the feeds: the input's fault (InvalidTensorError). */
const ORT_INPUT_ERROR =
  /invalid dimensions for input|invalid rank for input|unexpected input data type|missing in 'feeds'/i

/** The first argument: the engine's WorkerInit as JSON. */
const init = JSON.parse(process.argv[2] ?? '{}') as WorkerInit
const sessions = new Map<string, ort.InferenceSession>()
const now = () => performance.timeOrigin + performance.now()
/** Settles once the last message posted is written: exiting before then would drop it. */
let sent = Promise.resolve()
const post = (msg: FromWorker) => {
  if (!process.connected) return
  sent = new Promise((done) => process.send?.(msg, undefined, undefined, () => done()))
}

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
    post({ type: 'done', id, ...held, ok: true, outputs: toOutputs(results), sessionMs, runMs })
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
  await sent
  process.exit(0)
}

/**
 * Polls the parent's pid from a thread of its own, since a run holds the main thread: once this
 * process is re-parented (its parent died), it kills itself, ORT run and all.
 */
function watchParent(): void {
  const code = `const { workerData: ppid } = require('node:worker_threads')
setInterval(() => { if (process.ppid !== ppid) process.kill(process.pid, 'SIGKILL') }, 200)`
  new Worker(code, { eval: true, workerData: process.ppid }).unref()
}

if (process.send) {
  let chain = Promise.resolve()
  process.on('message', (msg: ToWorker) => {
    chain = chain.then(() => handle(msg))
  })
  // The parent closed the channel, or died: now, or before this listener was there (while loading).
  process.on('disconnect', () => process.exit(0))
  // Ctrl-C and `systemctl stop` signal the whole group: the parent decides when each child ends (it
  // hands running jobs back first), and its death is covered by 'disconnect' and the watchdog.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => {})
  if (!process.connected) process.exit(0)
  process.on('uncaughtException', (e) => {
    console.error(e)
    post({ type: 'failed', message: e.message })
    void sent.then(() => process.exit(1))
  })
  watchParent()
}
