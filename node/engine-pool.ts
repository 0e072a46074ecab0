/**
 * The ORT threads of the Node engine: up to `workers` node:worker_threads workers (node/ort.worker.ts),
 * each with its own sessions, one run at a time each. A run goes to an idle worker that has the
 * model's session, else any idle one, else a new one while there is room, else it waits in order.
 *
 * A run inside ORT cannot be stopped: onnxruntime-node ignores RunOptions.terminate, and terminating a
 * thread while ORT holds it aborts the whole process (the binding throws into a dying isolate). So an
 * aborted run's worker leaves the pool: its caller is answered at once, a fresh worker takes its
 * place, and the old one ends itself after that run. Threads, leaving ones included, stay at most
 * twice `workers`: past that a run waits for one to end.
 */

import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { Logger } from '@libp2p/interface'
import { copyOf } from '../src/shared/bytes.ts'
import { AbortError, InferenceError, namedError, UnknownModelError } from '../src/shared/errors.ts'
import type { NamedTensors } from '../src/shared/tensor.ts'
import type { NodeEp } from './ep.ts'
import type {
  FromWorker,
  GraphOptimization,
  RunReply,
  ToWorker,
  WorkerInit,
  WorkerNote,
} from './ort.worker.ts'
import type { InputMeta } from './ort-inputs.ts'

/** What the pool tells NodeEngineOptions.onEvent: each worker's notes, and its start and end. */
export type PoolEvent = { worker: number } & (
  | WorkerNote
  | { type: 'spawned' }
  | { type: 'exited'; code: number; expected: boolean }
)

export interface PoolOptions {
  workers: number
  threads: number
  maxSessions: number
  /** Each worker's sessions' (default 'all'). */
  graphOptimization?: GraphOptimization
  ep?: NodeEp
  /** The verified bytes of a loaded model (undefined once evicted). */
  bytesOf: (cid: string) => Uint8Array | undefined
  onEvent?: (e: PoolEvent) => void
  log?: Logger
}

export type PoolResult = Extract<RunReply, { ok: true }>

interface Handle {
  id: number
  worker: Worker
  /** The sessions it holds, least recently run first. */
  sessions: string[]
  job?: Job
  gone: boolean
}

interface Job {
  id: number
  cid: string
  inputs: NamedTensors
  transfer: ArrayBuffer[]
  resolve: (r: PoolResult) => void
  reject: (e: Error) => void
  handle?: Handle
}

const FROM_SOURCES = import.meta.url.endsWith('.ts')

/** dist-node/ort.worker.mjs beside the bundled CLI; node/ort.worker.ts (under tsx) from sources. */
function spawnWorker(init: WorkerInit): Worker {
  const entry = new URL(FROM_SOURCES ? './ort.worker.ts' : './ort.worker.mjs', import.meta.url)
  if (!FROM_SOURCES) return new Worker(entry, { workerData: init })
  // A worker does not inherit tsx's loader (nor Vitest's transform): it registers tsx first, by the
  // ESM build of tsx/esm/api (require.resolve finds the CJS one, which fails to load in a worker).
  const api = createRequire(import.meta.url)
    .resolve('tsx/esm/api')
    .replace(/\.cjs$/, '.mjs')
  const tsx = pathToFileURL(api).href
  const boot = `import(${JSON.stringify(tsx)}).then((t) => t.register()).then(() => import(${JSON.stringify(entry.href)}))`
  return new Worker(boot, { eval: true, workerData: init })
}

/** The pool's workers, queue and counters, shared by the steps below. */
interface Pool {
  o: PoolOptions
  live: Handle[]
  leaving: Set<Handle>
  queue: Job[]
  meta: Map<string, InputMeta[]>
  exits: Set<Promise<void>>
  seq: number
  workerSeq: number
  crash: 'throw' | 'exit' | undefined
  closed: boolean
}

export function createPool(o: PoolOptions) {
  const p: Pool = {
    o,
    live: [],
    leaving: new Set(),
    queue: [],
    meta: new Map(),
    exits: new Set(),
    seq: 0,
    workerSeq: 0,
    crash: undefined,
    closed: false,
  }

  return {
    /** What the model's session said its inputs are, once a worker has created one. */
    metaOf: (cid: string) => p.meta.get(cid),

    /** Runs in a worker. `inputs` go to the worker as they are, with `transfer` (the caller's to give). */
    run(
      cid: string,
      inputs: NamedTensors,
      transfer: ArrayBuffer[],
      signal: AbortSignal,
    ): Promise<PoolResult> {
      return enqueue(p, cid, inputs, transfer, signal)
    },

    evict(cid: string): void {
      p.meta.delete(cid)
      for (const h of p.live) {
        if (!h.sessions.includes(cid)) continue
        h.sessions = h.sessions.filter((c) => c !== cid)
        h.worker.postMessage({ type: 'evict', cid } satisfies ToWorker)
      }
    },

    /** Fails what waits, and ends every worker after its current message. */
    close: (reason: Error): void => close(p, reason),

    /** Resolves once every worker started so far has ended. */
    async ended(): Promise<void> {
      while (p.exits.size > 0) {
        const all = [...p.exits]
        await Promise.all(all)
        for (const e of all) p.exits.delete(e)
      }
    },

    crashNextRun(how: 'throw' | 'exit'): void {
      p.crash = how
    },
  }
}

function close(p: Pool, reason: Error): void {
  p.closed = true
  for (const job of p.queue.splice(0)) job.reject(reason)
  for (const h of [...p.live]) {
    const job = h.job
    retire(p, h)
    job?.reject(reason)
  }
  p.meta.clear()
}

/** Queues a run; an abort while queued drops it, and one while it runs retires its worker. */
function enqueue(
  p: Pool,
  cid: string,
  inputs: NamedTensors,
  transfer: ArrayBuffer[],
  signal: AbortSignal,
): Promise<PoolResult> {
  return new Promise<PoolResult>((resolve, reject) => {
    const onAbort = () => {
      const i = p.queue.indexOf(job)
      if (i >= 0) p.queue.splice(i, 1)
      else if (job.handle?.job === job) {
        p.o.log?.('run of %s aborted in worker %d: it leaves the pool', cid, job.handle.id)
        retire(p, job.handle)
        pump(p)
      }
      reject(new AbortError('aborted'))
    }
    const job: Job = {
      id: ++p.seq,
      cid,
      inputs,
      transfer,
      resolve: (r) => {
        signal.removeEventListener('abort', onAbort)
        resolve(r)
      },
      reject: (e) => {
        signal.removeEventListener('abort', onAbort)
        reject(e)
      },
    }
    if (signal.aborted) return reject(new AbortError('aborted before start'))
    signal.addEventListener('abort', onAbort, { once: true })
    p.queue.push(job)
    pump(p)
  })
}

function spawn(p: Pool): Handle {
  const { o } = p
  const init: WorkerInit = { threads: o.threads }
  if (o.graphOptimization) init.graphOptimization = o.graphOptimization
  if (o.ep) init.ep = o.ep
  const worker = spawnWorker(init)
  const h: Handle = { id: ++p.workerSeq, worker, sessions: [], gone: false }
  worker.unref() // an idle pool does not keep the process alive; a busy worker is ref'd
  worker.on('message', (msg: FromWorker) => onMessage(p, h, msg))
  worker.on('error', (e) => fail(p, h, new InferenceError(`ORT worker ${h.id} failed: ${e.message}`)))
  p.exits.add(
    new Promise<void>((resolve) => {
      worker.once('exit', (code) => {
        const expected = p.leaving.delete(h)
        if (!expected) fail(p, h, new InferenceError(`ORT worker ${h.id} exited with code ${code}`))
        o.onEvent?.({ worker: h.id, type: 'exited', code, expected })
        resolve()
        pump(p)
      })
    }),
  )
  p.live.push(h)
  o.onEvent?.({ worker: h.id, type: 'spawned' })
  return h
}

/** A crash: the run in it fails with the cause, and a fresh worker takes its place when needed. */
function fail(p: Pool, h: Handle, err: Error): void {
  if (h.gone) return
  h.gone = true
  p.o.log?.error('%s', err.message)
  p.live.splice(p.live.indexOf(h), 1)
  const job = h.job
  h.job = undefined
  job?.reject(err)
  pump(p)
}

/** Out of the pool: it ends itself once the message in progress (an unstoppable run) is done. */
function retire(p: Pool, h: Handle): void {
  if (h.gone) return
  h.gone = true
  p.live.splice(p.live.indexOf(h), 1)
  p.leaving.add(h)
  h.job = undefined
  h.worker.ref() // the process must not end while ORT holds that thread: that would abort it
  h.worker.postMessage({ type: 'exit' } satisfies ToWorker)
}

function onMessage(p: Pool, h: Handle, msg: FromWorker): void {
  const { o } = p
  if (msg.type !== 'done') {
    if (msg.type === 'session' && msg.ok) o.log?.('session for %s created in worker %d', msg.cid, h.id)
    o.onEvent?.({ worker: h.id, ...msg })
    if (msg.type === 'released') h.sessions = h.sessions.filter((c) => c !== msg.cid)
    return
  }
  const job = h.job
  if (h.gone || !job || job.id !== msg.id) return // an abandoned run's answer
  if (msg.inputs && o.bytesOf(job.cid)) p.meta.set(job.cid, msg.inputs)
  if (!msg.held) h.sessions = h.sessions.filter((c) => c !== job.cid)
  h.job = undefined
  h.worker.unref()
  if (msg.ok) job.resolve(msg)
  else job.reject(namedError(msg.name, msg.message))
  pump(p)
}

function pick(p: Pool, cid: string): Handle | undefined {
  if (p.closed) return undefined
  const idle = p.live.filter((h) => !h.job)
  const warm = idle.find((h) => h.sessions.includes(cid)) ?? idle[0]
  if (warm) return warm
  const { workers } = p.o
  if (p.live.length < workers && p.live.length + p.leaving.size < 2 * workers) return spawn(p)
  return undefined
}

function dispatch(p: Pool, job: Job, h: Handle): void {
  const has = h.sessions.includes(job.cid)
  const model = has ? undefined : p.o.bytesOf(job.cid)
  const bytes = model && copyOf(model) // one copy, of exactly the model, to transfer
  if (!has && !bytes) {
    job.reject(new UnknownModelError(`model ${job.cid} is not loaded`)) // evicted while it waited
    return
  }
  h.sessions = [...h.sessions.filter((c) => c !== job.cid), job.cid]
  const release = h.sessions.splice(0, Math.max(0, h.sessions.length - p.o.maxSessions))
  job.handle = h
  h.job = job
  h.worker.ref()
  const msg: ToWorker = { type: 'run', id: job.id, cid: job.cid, release, inputs: job.inputs }
  if (bytes) msg.bytes = bytes
  if (p.crash) msg.crash = p.crash
  p.crash = undefined
  h.worker.postMessage(msg, bytes ? [...job.transfer, bytes.buffer as ArrayBuffer] : job.transfer)
}

function pump(p: Pool): void {
  while (p.queue.length > 0) {
    const h = pick(p, p.queue[0]!.cid)
    if (!h) return
    dispatch(p, p.queue.shift()!, h)
  }
}
