/**
 * Contributor side of `/peer-compute/job/1.0.0`: admit, check, run, sign. Every failure becomes a
 * typed `reject` frame; nothing a peer sends can throw out of the handler.
 */
import type { Connection, Logger, Stream } from '@libp2p/interface'
import type { Admission } from '../compute/admission.ts'
import { JOB_PROTOCOL } from '../shared/protocol.ts'
import { createExecutor, type ExecutorOptions } from './execute.ts'
import {
  checkJobRequest,
  encodeResult,
  type JobReject,
  MAX_REQUEST_BYTES,
  type RejectCode,
} from './messages.ts'
import { recvFrame, sendFrame } from './stream-io.ts'

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
  onStart?(job: ServedJob): void
  onEnd?(job: ServedJob, outcome: { ok: boolean; code?: RejectCode; runMs?: number; ep?: string }): void
}

const CODE_BY_ERROR: Record<string, RejectCode> = {
  FrameTooLargeError: 'too-large',
  MalformedFrameError: 'bad-request',
  InvalidTensorError: 'bad-request',
  InvalidSignatureError: 'bad-signature',
  UnknownModelError: 'unknown-model',
  ModelIntegrityError: 'unknown-model',
  AbortError: 'cancelled',
  JobTimeoutError: 'deadline',
}

class Rejection extends Error {
  constructor(
    readonly code: RejectCode,
    message: string,
  ) {
    super(message)
  }
}

export function createJobHandler(opts: JobHandlerOptions) {
  const { log } = opts
  const execute = createExecutor(opts)

  async function serve(stream: Stream, connection: Connection): Promise<void> {
    const requester = connection.remotePeer.toString()
    let release: (() => void) | undefined
    let served: ServedJob | undefined
    const abort = new AbortController()
    stream.addEventListener('close', () => abort.abort(), { once: true })
    try {
      const frame = await recvFrame(stream, MAX_REQUEST_BYTES, opts.requestTimeoutMs ?? 30_000)
      const admitted = opts.admission.tryAcquire()
      if (typeof admitted === 'string') throw new Rejection(admitted, reasonFor(admitted))
      release = admitted
      const req = await checkJobRequest(frame)
      if (req.body.requester !== requester) {
        throw new Rejection('bad-request', `job signed by ${req.body.requester} but sent by ${requester}`)
      }
      const budget = req.body.deadline - Date.now()
      if (budget <= 0) throw new Rejection('deadline', 'the job deadline has already passed')
      const model = req.body.model.toString()
      served = { job: req.jobCid.toString(), model, requester, startedAt: Date.now() }
      opts.onStart?.(served)
      const signal = AbortSignal.any([abort.signal, AbortSignal.timeout(budget)])
      // the compute is done: free the slot before signing and replying so the next job can start
      const run = await execute(req, requester, signal, () => release?.())
      await sendFrame(stream, encodeResult(run.outputs, run.receipt), signal)
      await stream.close()
      opts.onEnd?.(served, { ok: true, runMs: run.runMs, ep: run.ep })
    } catch (err) {
      const code = err instanceof Rejection ? err.code : (CODE_BY_ERROR[(err as Error).name] ?? 'internal')
      const reason = (err as Error).message.slice(0, 500)
      log('job from %s rejected (%s): %s', requester, code, reason)
      if (served) opts.onEnd?.(served, { ok: false, code })
      await replyReject(stream, { t: 'reject', v: 1, code, reason })
    } finally {
      release?.()
    }
  }

  return {
    protocol: JOB_PROTOCOL,
    handler: (stream: Stream, connection: Connection) => {
      serve(stream, connection).catch((err) => log.error('job handler: %s', (err as Error).message))
    },
  }
}

async function replyReject(stream: Stream, msg: JobReject): Promise<void> {
  try {
    if (stream.writeStatus !== 'writable') return
    await sendFrame(stream, msg, AbortSignal.timeout(5000))
    await stream.close({ signal: AbortSignal.timeout(5000) })
  } catch {
    stream.abort(new Error('could not deliver rejection'))
  }
}

function reasonFor(code: 'not-contributing' | 'busy'): string {
  return code === 'busy' ? 'all job slots are in use' : 'this peer has contributing switched off'
}
