/**
 * The ORT processes of the Node engine: up to `workers` child processes (node/ort.worker.ts), each
 * with its own sessions, one run at a time each. A run goes to an idle one that has the model's
 * session, else any idle one, else a new one while there is room, else it waits in order. A
 * contributor starts them all ahead (prestart): a fork and onnxruntime's start cost a first job
 * hundreds of milliseconds, seconds when many contributors start at once.
 *
 * Processes, not threads, because a run inside ORT cannot be stopped: onnxruntime-node ignores
 * RunOptions.terminate, and terminating a thread while ORT holds it aborts the whole process. A
 * process can be killed: an aborted run's caller is answered at once, its process is SIGKILLed (gone
 * in milliseconds) and a fresh one takes its place on demand. IPC uses V8 serialization, so typed
 * arrays cross as raw bytes (copied, as nothing transfers between processes).
 */

import { type ChildProcess, fork } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { Logger } from '@libp2p/interface'
import { copyOf } from '../src/shared/bytes.ts'
import {
  AbortError,
  InferenceError,
  JobHandedBackError,
  namedError,
  UnknownModelError,
} from '../src/shared/errors.ts'
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

/** What the pool tells NodeEngineOptions.onEvent: each process's notes, and its start and end. */
export type PoolEvent = { worker: number } & (
  | WorkerNote
  /** `pid` unless it failed to start. */
  | { type: 'spawned'; pid?: number }
  /** As node:child_process says it: `signal` (then `code` is null) when it was killed. */
  | { type: 'exited'; code: number | null; signal?: NodeJS.Signals; expected: boolean }
)

export interface PoolOptions {
  workers: number
  threads: number
  maxSessions: number
  /** Each process's sessions' (default 'all'). */
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
  proc: ChildProcess
  /** The sessions it holds, least recently run first. */
  sessions: string[]
  job?: Job
  /** Out of the pool: crashed, or told to end (then its exit is expected). */
  gone: boolean
  expected: boolean
}

interface Job {
  id: number
  cid: string
  inputs: NamedTensors
  /** Aborted while it ran, past the kill budget: its process finishes the run, and the answer is dropped. */
  abandoned?: boolean
  resolve: (r: PoolResult) => void
  reject: (e: Error) => void
  handle?: Handle
}

const FROM_SOURCES = import.meta.url.endsWith('.ts')
/** How long a process told to exit may take to release its sessions before it is killed. */
const EXIT_GRACE_MS = 2000
/**
 * Aborted runs killed at most `workers` times per window: each kill costs a fork, ORT's start, the
 * model sent again and a cold session, and a requester can cancel as fast as it likes. Past the
 * budget an aborted run finishes in its process, unanswered, as it did in threads.
 */
const KILL_WINDOW_MS = 10_000

/**
 * dist-node/ort.worker.mjs beside the bundled CLI; node/ort.worker.ts from sources, under tsx's loader
 * named here: Vitest's transform never reaches a child, and tsx's only through this process's execArgv,
 * which is not passed on (it may hold an inspector port or a test runner's flags).
 */
export function forkWorker(init: WorkerInit): ChildProcess {
  const entry = new URL(FROM_SOURCES ? './ort.worker.ts' : './ort.worker.mjs', import.meta.url)
  const tsx = FROM_SOURCES && pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href
  return fork(fileURLToPath(entry), [JSON.stringify(init)], {
    execArgv: tsx ? ['--import', tsx] : [],
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
}

/** An idle process does not keep this one alive; a busy one does (its caller awaits the answer). */
function hold(h: Handle, busy: boolean): void {
  if (busy) {
    h.proc.ref()
    h.proc.channel?.ref()
  } else {
    h.proc.unref()
    h.proc.channel?.unref()
  }
}

/** The pool's processes, queue and counters, shared by the steps below. */
interface Pool {
  o: PoolOptions
  live: Handle[]
  queue: Job[]
  meta: Map<string, InputMeta[]>
  exits: Set<Promise<void>>
  seq: number
  workerSeq: number
  crash: 'throw' | 'exit' | undefined
  closed: boolean
  /** When aborted runs' processes were killed, within KILL_WINDOW_MS. */
  kills: number[]
}

export function createPool(o: PoolOptions) {
  const p: Pool = {
    o,
    live: [],
    queue: [],
    meta: new Map(),
    exits: new Set(),
    seq: 0,
    workerSeq: 0,
    crash: undefined,
    closed: false,
    kills: [],
  }

  return {
    /** What the model's session said its inputs are, once a process has created one. */
    metaOf: (cid: string) => p.meta.get(cid),

    /** Runs in a process. `inputs` are serialized (copied) as they are, so the caller keeps them. */
    run(cid: string, inputs: NamedTensors, signal: AbortSignal): Promise<PoolResult> {
      return enqueue(p, cid, inputs, signal)
    },

    /** Starts processes up to `workers` ahead of any run. */
    prestart(): void {
      while (!p.closed && p.live.length < p.o.workers) spawn(p)
    },

    evict(cid: string): void {
      p.meta.delete(cid)
      for (const h of p.live) {
        if (!h.sessions.includes(cid)) continue
        h.sessions = h.sessions.filter((c) => c !== cid)
        send(p, h, { type: 'evict', cid })
      }
    },

    /** Fails what waits and kills each busy process; an idle one releases its sessions and exits. */
    close: (reason: Error): void => close(p, reason),

    /** Resolves once every process started so far has exited. */
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
    if (job) kill(p, h)
    else retire(p, h)
    job?.reject(reason)
  }
  p.meta.clear()
}

/** Queues a run; an abort while queued drops it, and one while it runs kills its process. */
function enqueue(p: Pool, cid: string, inputs: NamedTensors, signal: AbortSignal): Promise<PoolResult> {
  return new Promise<PoolResult>((resolve, reject) => {
    const onAbort = () => {
      const i = p.queue.indexOf(job)
      if (i >= 0) p.queue.splice(i, 1)
      else if (job.handle?.job === job) abortRunning(p, job, job.handle, signal.reason)
      reject(new AbortError('aborted'))
    }
    const job: Job = {
      id: ++p.seq,
      cid,
      inputs,
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

/**
 * An aborted run: its process killed, within the budget; else left to finish, its answer dropped.
 * A hand-back (the contributor paused or stopped: JobHandedBackError) is always killed: it is this
 * contributor's own doing, never a requester's storm, and a pause is meant to free the cores.
 */
function abortRunning(p: Pool, job: Job, h: Handle, reason: unknown): void {
  const now = performance.now()
  p.kills = p.kills.filter((t) => now - t < KILL_WINDOW_MS)
  const own = (reason as Error | undefined)?.name === JobHandedBackError.NAME
  if (!own && p.kills.length >= Math.max(1, p.o.workers)) {
    p.o.log?.('run of %s aborted in worker %d: past the kill budget, it finishes unanswered', job.cid, h.id)
    job.abandoned = true
    return
  }
  if (!own) p.kills.push(now)
  p.o.log?.('run of %s aborted in worker %d: its process is killed', job.cid, h.id)
  kill(p, h)
  pump(p)
}

function spawn(p: Pool): Handle {
  const { o } = p
  const init: WorkerInit = { threads: o.threads }
  if (o.graphOptimization) init.graphOptimization = o.graphOptimization
  if (o.ep) init.ep = o.ep
  const proc = forkWorker(init)
  const h: Handle = { id: ++p.workerSeq, proc, sessions: [], gone: false, expected: false }
  hold(h, false)
  proc.on('message', (msg: FromWorker) => onMessage(p, h, msg))
  const exit = new Promise<void>((resolve) => {
    // A process that could not start, or a message that could not be sent: 'exit' may not follow.
    proc.on('error', (e) => {
      fail(p, h, new InferenceError(`ORT worker ${h.id} failed: ${e.message}`))
      if (proc.pid === undefined) resolve()
      else if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
    })
    proc.once('exit', (code, signal) => {
      const why = signal ? `was killed by ${signal}` : `exited with code ${code}`
      if (!h.expected) fail(p, h, new InferenceError(`ORT worker ${h.id} ${why}`))
      const end = { worker: h.id, type: 'exited', code, expected: h.expected } as const
      o.onEvent?.(signal ? { ...end, signal } : end)
      resolve()
      pump(p)
    })
  })
  p.exits.add(exit)
  void exit.then(() => p.exits.delete(exit))
  p.live.push(h)
  o.onEvent?.({ worker: h.id, type: 'spawned', ...(proc.pid ? { pid: proc.pid } : {}) })
  return h
}

/** Posts to a process; a channel already closed means it is gone or going ('exit' follows). */
function send(p: Pool, h: Handle, msg: ToWorker): void {
  if (!h.proc.connected) return
  const failed = (e: Error) => fail(p, h, new InferenceError(`ORT worker ${h.id} failed: ${e.message}`))
  try {
    h.proc.send(msg, undefined, undefined, (e) => e && failed(e))
  } catch (e) {
    failed(e as Error) // e.g. no memory to serialize a large model: the process is of no use either
  }
}

/** A crash: the run in it fails with the cause, and a fresh process takes its place when needed. */
function fail(p: Pool, h: Handle, err: Error): void {
  if (h.gone) return
  h.gone = true
  // It may still be alive (it reported a crash, or could not be sent to): it must not run on or hang.
  if (h.proc.exitCode === null && h.proc.signalCode === null) h.proc.kill('SIGKILL')
  p.o.log?.error('%s', err.message)
  p.live.splice(p.live.indexOf(h), 1)
  const job = h.job
  h.job = undefined
  job?.reject(err)
  pump(p)
}

/** Out of the pool at once, run and all: a killed process is gone in milliseconds. */
function kill(p: Pool, h: Handle): void {
  if (h.gone) return
  h.gone = true
  h.expected = true
  p.live.splice(p.live.indexOf(h), 1)
  h.job = undefined
  hold(h, true) // until its 'exit': closed() waits for it
  h.proc.kill('SIGKILL')
}

/** Out of the pool, idle: it releases its sessions and exits, or is killed if it takes too long. */
function retire(p: Pool, h: Handle): void {
  if (h.gone) return
  h.gone = true
  h.expected = true
  p.live.splice(p.live.indexOf(h), 1)
  hold(h, true) // until its 'exit': closed() waits for it
  send(p, h, { type: 'exit' })
  const late = setTimeout(() => h.proc.kill('SIGKILL'), EXIT_GRACE_MS)
  late.unref()
  h.proc.once('exit', () => clearTimeout(late))
}

function onMessage(p: Pool, h: Handle, msg: FromWorker): void {
  const { o } = p
  if (msg.type === 'failed') {
    fail(p, h, new InferenceError(`ORT worker ${h.id} failed: ${msg.message}`))
    return
  }
  if (msg.type !== 'done') {
    if (msg.type === 'session' && msg.ok) o.log?.('session for %s created in worker %d', msg.cid, h.id)
    o.onEvent?.({ worker: h.id, ...msg })
    if (msg.type === 'released') h.sessions = h.sessions.filter((c) => c !== msg.cid)
    return
  }
  const job = h.job
  if (h.gone || !job || job.id !== msg.id) return // a killed run's answer
  if (msg.inputs && o.bytesOf(job.cid)) p.meta.set(job.cid, msg.inputs)
  // Not added back when held: an evict sent during this run reaches the process after it.
  if (!msg.held) h.sessions = h.sessions.filter((c) => c !== job.cid)
  h.job = undefined
  hold(h, false)
  // An abandoned run's caller was answered at the abort: its process is simply free again.
  if (!job.abandoned) {
    if (msg.ok) job.resolve({ ...msg, outputs: owned(msg.outputs) })
    else job.reject(namedError(msg.name, msg.message))
  }
  pump(p)
}

/** Received tensors are views into the message's buffer (or Node's shared pool): each gets its own. */
function owned(tensors: NamedTensors): NamedTensors {
  const out: NamedTensors = {}
  for (const [name, t] of Object.entries(tensors)) {
    const whole = t.data.byteOffset === 0 && t.data.byteLength === t.data.buffer.byteLength
    out[name] = whole ? t : { ...t, data: copyOf(t.data) }
  }
  return out
}

function pick(p: Pool, cid: string): Handle | undefined {
  if (p.closed) return undefined
  const idle = p.live.filter((h) => !h.job)
  const warm = idle.find((h) => h.sessions.includes(cid)) ?? idle[0]
  if (warm) return warm
  return p.live.length < p.o.workers ? spawn(p) : undefined
}

function dispatch(p: Pool, job: Job, h: Handle): void {
  const has = h.sessions.includes(job.cid)
  const bytes = has ? undefined : p.o.bytesOf(job.cid) // serialized (copied) by send
  if (!has && !bytes) {
    job.reject(new UnknownModelError(`model ${job.cid} is not loaded`)) // evicted while it waited
    return
  }
  h.sessions = [...h.sessions.filter((c) => c !== job.cid), job.cid]
  const release = h.sessions.splice(0, Math.max(0, h.sessions.length - p.o.maxSessions))
  job.handle = h
  h.job = job
  hold(h, true)
  const msg: ToWorker = { type: 'run', id: job.id, cid: job.cid, release, inputs: job.inputs }
  if (bytes) msg.bytes = bytes
  if (p.crash) msg.crash = p.crash
  p.crash = undefined
  send(p, h, msg)
}

function pump(p: Pool): void {
  while (p.queue.length > 0) {
    const h = pick(p, p.queue[0]!.cid)
    if (!h) return
    dispatch(p, p.queue.shift()!, h)
  }
}
