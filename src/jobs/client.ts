/** Requester side of `/peer-compute/job/1.0.0`: sign, send, and verify before accepting anything. */
import type { Connection, PrivateKey } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import { AbortError, JobRejectedError, JobTimeoutError, MalformedFrameError } from '../shared/errors.ts'
import { JOB_PROTOCOL } from '../shared/protocol.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { encodeTensors, tensorsCid } from '../shared/tensor-codec.ts'
import { type JobBody, jobCid, newNonce, signJob } from '../trust/job-sig.ts'
import type { Receipt } from '../trust/receipt.ts'
import { MAX_RESULT_BYTES, verifyJobResult } from './messages.ts'
import { recvFrame, sendFrame } from './stream-io.ts'

export interface JobResult {
  job: string
  worker: string
  outputs: NamedTensors
  receipt: Receipt
  roundTripMs: number
}

export interface SendJobOptions {
  connection: Connection
  privateKey: PrivateKey
  selfId: string
  model: string
  inputs: NamedTensors
  timeoutMs: number
  signal?: AbortSignal
}

/** Sends one job over a direct connection; resolves only with a verified result. */
export async function sendJob(opts: SendJobOptions): Promise<JobResult> {
  const started = performance.now()
  const worker = opts.connection.remotePeer.toString()
  const body: JobBody = {
    v: 1,
    model: CID.parse(opts.model),
    input: await tensorsCid(opts.inputs),
    requester: opts.selfId,
    deadline: Date.now() + opts.timeoutMs,
    nonce: newNonce(),
  }
  const job = await jobCid(body)
  const signal = AbortSignal.any([AbortSignal.timeout(opts.timeoutMs), ...(opts.signal ? [opts.signal] : [])])
  const stream = await opts.connection.newStream(JOB_PROTOCOL, { signal })
  // A named error: callers (and job records) branch on err.name, never on a bare Error.
  const onAbort = () =>
    stream.abort(
      opts.signal?.aborted
        ? new AbortError('job cancelled by requester')
        : new JobTimeoutError(`no result within ${opts.timeoutMs} ms`),
    )
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    if (signal.aborted) onAbort()
    const sig = await signJob(body, opts.privateKey)
    await sendFrame(stream, { t: 'job', v: 1, body, sig, inputs: encodeTensors(opts.inputs) }, signal)
    const frame = await recvFrame(stream, MAX_RESULT_BYTES, opts.timeoutMs + 1000)
    if (frame.t === 'reject') {
      const code = String(frame.code ?? 'internal')
      const err = new JobRejectedError(`${worker} rejected the job (${code}): ${String(frame.reason)}`)
      throw Object.assign(err, { code })
    }
    if (frame.t !== 'result') throw new MalformedFrameError(`unexpected frame type ${String(frame.t)}`)
    const { outputs, receipt } = await verifyJobResult(frame, {
      jobCid: job,
      model: body.model,
      input: body.input,
      requester: opts.selfId,
      worker,
    })
    return { job: job.toString(), worker, outputs, receipt, roundTripMs: performance.now() - started }
  } catch (err) {
    stream.abort(err as Error)
    throw err
  } finally {
    signal.removeEventListener('abort', onAbort)
    if (stream.status === 'open') await stream.close().catch(() => {})
  }
}
