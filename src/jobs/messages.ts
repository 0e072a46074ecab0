/**
 * Messages of `/peer-compute/job/1.1.0` and strict validators for frames from untrusted peers.
 * Shape errors are MalformedFrameError naming the field path; tensor contents give InvalidTensorError.
 */
import type { CID } from 'multiformats/cid'
import type { Frame } from '../net/frame.ts'
import { MalformedFrameError, OutputMismatchError } from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import {
  decodeTensors,
  type EncodedTensors,
  encodeTensors,
  type TensorLimits,
  tensorsCid,
} from '../shared/tensor-codec.ts'
import { type JobBody, jobCid, parseJobBody, verifyJobSig } from '../trust/job-sig.ts'
import { type Receipt, verifyReceipt } from '../trust/receipt.ts'

export const MAX_REQUEST_BYTES = 16 * 1024 * 1024
export const MAX_RESULT_BYTES = 16 * 1024 * 1024
export const MAX_REJECT_BYTES = 4 * 1024
export const MAX_TENSOR_ELEMENTS = 4 * 1024 * 1024
export const MAX_REASON_LENGTH = 512

export const REJECT_CODES = [
  'not-contributing',
  'busy',
  'unknown-model',
  'too-large',
  /** The model exceeds this contributor's own size limit: another contributor may take it. */
  'model-too-large',
  'bad-request',
  'bad-signature',
  'deadline',
  'internal',
  'cancelled',
] as const
export type RejectCode = (typeof REJECT_CODES)[number]

export type JobRequest = {
  t: 'job'
  v: 1
  body: JobBody
  sig: Uint8Array
  inputs: EncodedTensors
}
export type JobResult = {
  t: 'result'
  v: 1
  outputs: EncodedTensors
  receipt: Receipt
}
export type JobReject = {
  t: 'reject'
  v: 1
  code: RejectCode
  reason: string
}
export type JobMessage = JobRequest | JobResult | JobReject
// Type aliases, not interfaces, so messages are assignable to Frame's index signature.

const DEFAULT_LIMITS: TensorLimits = { maxElements: MAX_TENSOR_ELEMENTS }

/** Builds the result message (tensors in canonical encoding) for sendFrame. */
export function encodeResult(outputs: NamedTensors, receipt: Receipt): JobResult {
  return {
    t: 'result',
    v: 1,
    outputs: encodeTensors(outputs),
    receipt: { body: receipt.body, sig: receipt.sig },
  }
}

const malformed = (path: string, why: string): never => {
  throw new MalformedFrameError(`${path}: ${why}`)
}

const isMap = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x) && !ArrayBuffer.isView(x)

function checkEnvelope(frame: Frame, t: JobMessage['t'], keys: string[]): void {
  if (frame.t !== t) malformed('frame.t', `expected '${t}', got '${String(frame.t).slice(0, 32)}'`)
  const got = Object.keys(frame).sort()
  if (got.join() !== ['t', 'v', ...keys].sort().join())
    malformed('frame', `'${t}' must have exactly t, v, ${keys}`)
  if (frame.v !== 1) malformed('frame.v', 'must be 1')
}

/** Checks shape only; the signature and tensors are checked by startJobChecks. */
export function parseJobRequest(frame: Frame): JobRequest {
  checkEnvelope(frame, 'job', ['body', 'sig', 'inputs'])
  const body = parseJobBody(frame.body, 'job.body')
  if (!(frame.sig instanceof Uint8Array)) malformed('job.sig', 'must be bytes')
  if (!isMap(frame.inputs)) malformed('job.inputs', 'must be a map')
  return { t: 'job', v: 1, body, sig: frame.sig as Uint8Array, inputs: frame.inputs as EncodedTensors }
}

export function parseJobResult(frame: Frame): JobResult {
  checkEnvelope(frame, 'result', ['outputs', 'receipt'])
  if (!isMap(frame.outputs)) malformed('result.outputs', 'must be a map')
  if (!isMap(frame.receipt)) malformed('result.receipt', 'must be a map')
  return {
    t: 'result',
    v: 1,
    outputs: frame.outputs as EncodedTensors,
    receipt: frame.receipt as unknown as Receipt,
  }
}

export function parseJobReject(frame: Frame): JobReject {
  checkEnvelope(frame, 'reject', ['code', 'reason'])
  if (!(REJECT_CODES as readonly unknown[]).includes(frame.code)) malformed('reject.code', 'unknown code')
  if (typeof frame.reason !== 'string' || frame.reason.length > MAX_REASON_LENGTH) {
    malformed('reject.reason', `must be a string of at most ${MAX_REASON_LENGTH} chars`)
  }
  return { t: 'reject', v: 1, code: frame.code as RejectCode, reason: frame.reason as string }
}

export interface CheckedJobRequest {
  body: JobBody
  inputs: NamedTensors
  jobCid: CID
}

/** A request whose shape and tensors are checked; `checked` settles once its signature and input CID are. */
export interface ReadJobRequest {
  body: JobBody
  inputs: NamedTensors
  checked: Promise<CheckedJobRequest>
}

/**
 * Contributor side, for a request parseJobRequest accepted (a caller can refuse it on its fields first):
 * checks the tensors at once (InvalidTensorError), then the requester's signature
 * (InvalidSignatureError) and that `body.input` is the inputs' CID, all three digests at the same
 * time. The sender is already authenticated by its connection, and a caller checks `body.requester`
 * against it: a bad signature buys nothing a valid one would not. Deadline policy is left to the caller.
 */
export function startJobChecks(req: JobRequest, limits: TensorLimits = DEFAULT_LIMITS): ReadJobRequest {
  const inputs = decodeTensors(req.inputs, limits)
  const checked = Promise.all([verifyJobSig(req.body, req.sig), jobCid(req.body), tensorsCid(inputs)]).then(
    ([body, job, cid]) => {
      if (!cid.equals(body.input)) malformed('job.body.input', `is ${body.input}, inputs hash to ${cid}`)
      return { body, inputs, jobCid: job }
    },
  )
  checked.catch(() => {}) // a caller that fails first never awaits it
  return { body: req.body, inputs, checked }
}

export interface ResultExpectations {
  jobCid: CID
  model: CID
  input: CID
  requester: string
  worker: string
}

/**
 * Requester side: decodes outputs, recomputes their CID and verifies the receipt's signature and
 * every expected field. A receipt for other outputs gives OutputMismatchError; for another job, InvalidReceiptError.
 */
export async function verifyJobResult(
  frame: Frame,
  expected: ResultExpectations,
  limits: TensorLimits = DEFAULT_LIMITS,
): Promise<{ outputs: NamedTensors; receipt: Receipt }> {
  const res = parseJobResult(frame)
  const outputs = decodeTensors(res.outputs, limits)
  // Hash the outputs while the signature is checked; a bad signature is reported first, as before.
  const [receipt, output] = await Promise.all([
    verifyReceipt(res.receipt, {
      job: expected.jobCid,
      model: expected.model,
      input: expected.input,
      requester: expected.requester,
      worker: expected.worker,
    }),
    tensorsCid(outputs),
  ])
  if (!output.equals(receipt.body.output)) {
    throw new OutputMismatchError(`receipt output ${receipt.body.output} != expected ${output}`)
  }
  return { outputs, receipt }
}
