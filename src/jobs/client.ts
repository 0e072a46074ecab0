/** Requester side of `/peer-compute/job/1.1.0`: sign, send, and verify before accepting anything. */
import type { Connection, PrivateKey, Stream } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import type { Frame } from '../net/frame.ts'
import {
  AbortError,
  describeError,
  JobNotSentError,
  JobRejectedError,
  JobTimeoutError,
  MalformedFrameError,
} from '../shared/errors.ts'
import { JOB_PROTOCOL } from '../shared/protocol.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { encodeTensors, tensorsCid } from '../shared/tensor-codec.ts'
import { type JobBody, jobCid, newNonce, signJob } from '../trust/job-sig.ts'
import { isAnswered } from './failure.ts'
import { MAX_REJECT_BYTES, MAX_RESULT_BYTES, parseJobReject, verifyJobResult } from './messages.ts'
import type { DispatchResult } from './quorum-types.ts'
import { frameBytes, nextFrame, quiet, sendFrame } from './stream-io.ts'
import type { StreamPool } from './stream-pool.ts'

/** How long a failed send waits for the refusal that may explain it. */
const REFUSAL_WAIT_MS = 1000
const sleep = (ms: number) => new Promise<null>((r) => setTimeout(() => r(null), ms))

export interface SendJobOptions {
  connection: Connection
  privateKey: PrivateKey
  selfId: string
  model: string
  inputs: NamedTensors
  /** The inputs' CID, if the caller has it already (it is the same for every replica). */
  inputCid?: CID
  /** Reuse idle job streams; without one, each job opens and closes its own stream. */
  streams?: StreamPool
  timeoutMs: number
  signal?: AbortSignal
  /** Ask the contributor to run the job as its trace and keep it for a dispute (JobBody.trace). */
  trace?: boolean
}

class StaleStreamError extends Error {
  override name = 'StaleStreamError'
}

/** One signed job, ready to go out on a stream (a fresh one, or a reused idle one). */
interface Outgoing {
  opts: SendJobOptions
  worker: string
  body: JobBody
  job: CID
  request: Frame
  signal: AbortSignal
  started: number
}

/** Sends one job over a direct connection; resolves only with a verified result. */
export async function sendJob(opts: SendJobOptions): Promise<DispatchResult> {
  const started = performance.now()
  const { connection } = opts
  const worker = connection.remotePeer.toString()
  const body: JobBody = {
    v: 1,
    model: CID.parse(opts.model),
    input: opts.inputCid ?? (await tensorsCid(opts.inputs)),
    requester: opts.selfId,
    deadline: Date.now() + opts.timeoutMs,
    nonce: newNonce(),
    ...(opts.trace ? { trace: true as const } : {}),
  }
  const signal = AbortSignal.any([AbortSignal.timeout(opts.timeoutMs), ...(opts.signal ? [opts.signal] : [])])
  const [job, sig] = await Promise.all([jobCid(body), signJob(body, opts.privateKey)])
  const request = { t: 'job', v: 1, body, sig, inputs: encodeTensors(opts.inputs) }
  const out: Outgoing = { opts, worker, body, job, request, signal, started }

  // Opening can fail before anything is sent (a data channel that closes before it opens rejects
  // with a bare Event): that job never reached the contributor.
  const notSent = (e: unknown): never => {
    if (signal.aborted) throw e
    throw new JobNotSentError(`could not open a job stream: ${describeError(e)}`)
  }
  const open = () => connection.newStream(JOB_PROTOCOL, { signal }).catch(notSent)
  const first = opts.streams
    ? await opts.streams.acquire(connection, signal).catch(notSent)
    : { stream: await open(), reused: false }
  try {
    return await exchange(out, first.stream, first.reused)
  } catch (err) {
    if ((err as Error).name !== 'StaleStreamError') throw err
    // The contributor closed the idle stream as we picked it, before it had our job: once more on a
    // fresh one. Past the send, a failure stands (the job may be running there).
    return await exchange(out, await open(), false)
  }
}

async function exchange(out: Outgoing, stream: Stream, reused: boolean): Promise<DispatchResult> {
  const { opts, signal, worker } = out
  // A named error: callers (and job records) branch on err.name, never on a bare Error.
  const onAbort = () =>
    stream.abort(
      opts.signal?.aborted
        ? new AbortError('job cancelled by requester')
        : new JobTimeoutError(`no result within ${opts.timeoutMs} ms`),
    )
  signal.addEventListener('abort', onAbort, { once: true })
  let sent = false
  let answered = false
  try {
    if (signal.aborted) onAbort()
    // Read from the start: a contributor may refuse a job while it is still going out (over its
    // size limit) and close the stream, and then its refusal, not the failed send, is the answer.
    const reply = nextFrame(stream, MAX_RESULT_BYTES, opts.timeoutMs + 1000)
    reply.catch(() => {})
    try {
      await sendFrame(stream, out.request, signal)
    } catch (e) {
      const early = await Promise.race([reply.catch(() => null), sleep(REFUSAL_WAIT_MS)])
      if (early?.t !== 'reject') throw e
    }
    sent = true
    const frame = await reply
    if (frame == null) {
      if (reused) throw new StaleStreamError('the idle stream was closed by the contributor')
      throw new MalformedFrameError('stream ended before a complete frame')
    }
    answered = true
    if (frame.t === 'reject') throw rejection(frame, worker)
    if (frame.t !== 'result') throw new MalformedFrameError(`unexpected frame type ${String(frame.t)}`)
    const { outputs, receipt } = await verifyJobResult(frame, {
      jobCid: out.job,
      model: out.body.model,
      input: out.body.input,
      requester: opts.selfId,
      worker,
    })
    if (opts.streams && quiet(stream)) opts.streams.release(opts.connection, stream)
    else await stream.close().catch(() => {})
    return { job: out.job.toString(), worker, outputs, receipt, roundTripMs: performance.now() - out.started }
  } catch (err) {
    const e = err as Error
    if (answered && e.name === 'JobRejectedError') await stream.close().catch(() => {})
    else stream.abort(e instanceof Error ? e : new Error(describeError(e)))
    // Failed before the job was handed over, for a reason that is neither ours nor the peer's
    // (a data channel that closed before it opened aborts its stream with a bare Event).
    if (!sent && !signal.aborted && !isAnswered(e)) {
      if (reused) throw new StaleStreamError(describeError(e))
      throw new JobNotSentError(`job stream failed before the job was sent: ${describeError(e)}`)
    }
    throw err
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

/** The error a reject frame stands for (or a malformed-frame error for an oversized one). */
function rejection(frame: Frame, worker: string): Error {
  // Read under the result limit (the type is known only once decoded), held to a reject's own.
  const size = frameBytes(frame)
  if (size > MAX_REJECT_BYTES) {
    return new MalformedFrameError(`reject frame of ${size} bytes, limit ${MAX_REJECT_BYTES}`)
  }
  const { code, reason } = parseJobReject(frame)
  const err = new JobRejectedError(`${worker} rejected the job (${code}): ${reason}`)
  return Object.assign(err, { code })
}
