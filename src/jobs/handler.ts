/**
 * Contributor side of `/peer-compute/job/1.1.0`: admit, check, run, sign. Every failure becomes a
 * typed `reject` frame; nothing a peer sends can throw out of the handler.
 */
import type { Connection, Logger, Stream } from '@libp2p/interface'
import type { Admission } from '../compute/admission.ts'
import type { Frame } from '../net/frame.ts'
import { createInboundGuard } from '../net/inbound.ts'
import { JOB_PROTOCOL } from '../shared/protocol.ts'
import type { Receipt } from '../trust/receipt.ts'
import { type Adversary, createAdversary, type TestHooks } from './adversary.ts'
import { createExecutor, type Executed, type ExecutorOptions } from './execute.ts'
import {
  type CheckedJobRequest,
  encodeResult,
  type JobReject,
  MAX_REQUEST_BYTES,
  parseJobRequest,
  type ReadJobRequest,
  type RejectCode,
  startJobChecks,
} from './messages.ts'
import { frameBytes, nextFrame, sendFrame } from './stream-io.ts'

/** Job streams one peer may hold open beyond our slots: a requester keeps up to 4 idle for reuse. */
export const JOB_STREAMS_MARGIN = 8
/** Bytes one peer's partial job frames may hold: one largest request and some. */
export const MAX_PARTIAL_BYTES_PER_PEER = MAX_REQUEST_BYTES + 8 * 1024 * 1024
/** Bytes all peers' partial job frames may hold together. */
export const MAX_PARTIAL_BYTES_TOTAL = 4 * MAX_REQUEST_BYTES

export interface ServedJob {
  job: string
  model: string
  requester: string
  startedAt: number
}

export interface JobHandlerOptions extends ExecutorOptions {
  admission: Admission
  log: Logger
  requestTimeoutMs?: number
  /** Close a job stream left idle this long between jobs (1.1.0 streams carry several). */
  idleStreamMs?: number
  /** Test-only misbehaviour (src/jobs/adversary.ts); never set by the app's UI. */
  testHooks?: TestHooks
  onStart?(job: ServedJob): void
  onEnd?(
    job: ServedJob,
    outcome: {
      ok: boolean
      code?: RejectCode
      runMs?: number
      ep?: string
      receipt?: Receipt
      /** The job request frame's bytes. */
      bytesIn?: number
      /** The result frame's bytes. */
      bytesOut?: number
      bytes?: number
    },
  ): void
}

const CODE_BY_ERROR: Record<string, RejectCode> = {
  FrameTooLargeError: 'too-large',
  ModelTooLargeError: 'model-too-large',
  MalformedFrameError: 'bad-request',
  InboundLimitError: 'busy', // our bound, not the job's fault: the requester retries or goes elsewhere
  InvalidTensorError: 'bad-request',
  InvalidSignatureError: 'bad-signature',
  UnknownModelError: 'unknown-model',
  ModelIntegrityError: 'unknown-model',
  AbortError: 'cancelled',
  JobTimeoutError: 'deadline',
  JobHandedBackError: 'cancelled', // the contributor paused: the requester reissues elsewhere
}

class Rejection extends Error {
  constructor(
    readonly code: RejectCode,
    message: string,
  ) {
    super(message)
  }
}

/** What one handler's streams share: its options, executor, and (test builds only) adversary. */
interface HandlerCtx {
  opts: JobHandlerOptions
  execute: ReturnType<typeof createExecutor>
  adversary: Adversary | undefined
  inbound: ReturnType<typeof createInboundGuard>
}

export function createJobHandler(opts: JobHandlerOptions) {
  const { log } = opts
  const inbound = createInboundGuard({
    streamsPerPeer: () => opts.admission.maxSlots + JOB_STREAMS_MARGIN,
    bytesPerPeer: MAX_PARTIAL_BYTES_PER_PEER,
    bytesTotal: MAX_PARTIAL_BYTES_TOTAL,
  })
  const ctx: HandlerCtx = {
    opts,
    execute: createExecutor(opts),
    // Only a test build (__PC_TEST_HOOKS__) keeps createAdversary: dist/ tree-shakes adversary.ts away.
    adversary:
      __PC_TEST_HOOKS__ && opts.testHooks ? createAdversary(opts.testHooks, opts.privateKey) : undefined,
    inbound,
  }

  return {
    protocol: JOB_PROTOCOL,
    /** Streams and partial-frame bytes peers hold now. */
    held: inbound.held,
    handler: (stream: Stream, connection: Connection) => {
      const release = inbound.open(connection.remotePeer.toString())
      if (!release) {
        const reason = `too many job streams from one peer (at most ${opts.admission.maxSlots + JOB_STREAMS_MARGIN})`
        // Refused as it opens: the requester may still be writing its job, then reads `busy` and
        // retries; a reset here would look to it like a stream that failed before the job went out.
        void replyReject(stream, { t: 'reject', v: 1, code: 'busy', reason }, { reset: false })
        return
      }
      serve(ctx, stream, connection)
        .catch((err) => log.error('job handler: %s', (err as Error).message))
        .finally(release)
    },
  }
}

/** Serves jobs on one stream until the requester closes it. */
async function serve(ctx: HandlerCtx, stream: Stream, connection: Connection): Promise<void> {
  const { opts } = ctx
  const budget = ctx.inbound.budget(connection.remotePeer.toString())
  const abort = new AbortController()
  stream.addEventListener('close', () => abort.abort(), { once: true })
  const idleMs = opts.idleStreamMs ?? 30_000
  for (let first = true; ; first = false) {
    let frame: Frame | null
    try {
      const timeoutMs = first ? (opts.requestTimeoutMs ?? 30_000) : idleMs
      frame = await nextFrame(stream, MAX_REQUEST_BYTES, timeoutMs, budget)
    } catch (err) {
      // Idle past its time between jobs: nothing is owed on this stream.
      if (!first && (err as Error).name === 'JobTimeoutError') return
      await answerFailure(opts, stream, connection, undefined, err as Error)
      return
    }
    if (frame == null) {
      await stream.close().catch(() => {})
      return
    }
    if (!(await serveOne(ctx, frame, stream, connection, abort.signal))) return
  }
}

/** One job; true when it was answered with a result and the stream can carry the next. */
async function serveOne(
  { opts, execute, adversary }: HandlerCtx,
  frame: Frame,
  stream: Stream,
  connection: Connection,
  closed: AbortSignal,
) {
  const requester = connection.remotePeer.toString()
  let release: (() => void) | undefined
  let served: ServedJob | undefined
  try {
    // Shape first: a malformed frame must not take a compute slot, even for the time of its reply.
    const parsed = parseJobRequest(frame)
    const admitted = opts.admission.tryAcquire()
    if (typeof admitted === 'string') throw new Rejection(admitted, opts.admission.why(admitted))
    release = admitted
    if (parsed.body.requester !== requester) {
      throw new Rejection('bad-request', `job signed by ${parsed.body.requester} but sent by ${requester}`)
    }
    const budget = parsed.body.deadline - Date.now()
    if (budget <= 0) throw new Rejection('deadline', 'the job deadline has already passed')
    const read = startJobChecks(parsed) // digests start only for a job we would run
    const failed = new AbortController() // a failed check stops a run already under way
    const signal = AbortSignal.any([closed, AbortSignal.timeout(budget), failed.signal])
    // the compute is done: free the slot before signing and replying so the next job can start
    const exec = (r: CheckedJobRequest | ReadJobRequest) => execute(r, requester, signal, () => release?.())
    // The run starts while the signature and input CID are checked; nothing goes out unless both hold.
    const running = adversary ? undefined : exec(read)
    running?.catch(() => {})
    const req = await read.checked.catch((err: Error) => {
      failed.abort(err)
      throw err
    })
    served = {
      job: req.jobCid.toString(),
      model: req.body.model.toString(),
      requester,
      startedAt: Date.now(),
    }
    opts.onStart?.(served)
    const run = await (running ?? misbehave(adversary!, req, exec, stream, connection))
    if (run == null) return false
    const bytesOut = await sendFrame(stream, encodeResult(run.outputs, run.receipt), signal)
    const bytesIn = frameBytes(frame)
    const { runMs, ep, receipt } = run
    opts.onEnd?.(served, { ok: true, runMs, ep, receipt, bytesIn, bytesOut, bytes: bytesIn + bytesOut })
    return true
  } catch (err) {
    release?.() // the slot is free while the refusal goes out (up to 5 s to a slow peer)
    await answerFailure(opts, stream, connection, served, err as Error)
    return false
  } finally {
    release?.()
  }
}

async function answerFailure(
  opts: JobHandlerOptions,
  stream: Stream,
  connection: Connection,
  served: ServedJob | undefined,
  err: Error,
) {
  const code = err instanceof Rejection ? err.code : (CODE_BY_ERROR[err.name] ?? 'internal')
  const reason = err.message.slice(0, 500)
  opts.log('job from %s rejected (%s): %s', connection.remotePeer, code, reason)
  if (served) opts.onEnd?.(served, { ok: false, code })
  await replyReject(stream, { t: 'reject', v: 1, code, reason })
}

async function replyReject(stream: Stream, msg: JobReject, o = { reset: true }): Promise<void> {
  // Nothing more is read from a refused stream: a peer that keeps sending is reset at a small
  // buffer instead of libp2p's 4 MiB, and a graceful close gets 1 s, not 5.
  stream.maxReadBufferLength = REFUSED_READ_BUFFER
  try {
    if (stream.writeStatus !== 'writable') return
    await sendFrame(stream, msg, AbortSignal.timeout(5000))
    await stream.close({ signal: AbortSignal.timeout(REFUSED_CLOSE_MS) })
    // Our side is done and the reject delivered; a peer that keeps its side open gets a reset.
    if (o.reset && stream.status !== 'closed') stream.abort(new Error('refused'))
  } catch {
    stream.abort(new Error('could not deliver rejection'))
  }
}

/** What a refused stream may still buffer, and how long its graceful close may take. */
const REFUSED_READ_BUFFER = 64 * 1024
const REFUSED_CLOSE_MS = 1000

/** Applies a test adversary; resolves undefined when it chose not to reply at all. */
async function misbehave(
  adversary: Adversary,
  req: CheckedJobRequest,
  exec: (r: CheckedJobRequest) => Promise<Executed>,
  stream: Stream,
  connection: Connection,
): Promise<Executed | undefined> {
  if (!adversary.active()) return exec(req)
  const m = await adversary.misbehave(req, exec)
  if (m.kind === 'reply') return m.result
  if (m.kind === 'drop') await connection.close().catch(() => connection.abort(new Error('dropped')))
  else await new Promise((r) => stream.addEventListener('close', r, { once: true })) // hang until the requester gives up
  return undefined
}
