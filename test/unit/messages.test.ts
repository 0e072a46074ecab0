import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { beforeAll, describe, expect, it } from 'vitest'
import { encodeResult, MAX_RESULT_BYTES, parseJobReject, verifyJobResult } from '../../src/jobs/messages.ts'
import { type Frame, FrameDecoder } from '../../src/net/frame.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { encodeTensors, tensorsCid } from '../../src/shared/tensor-codec.ts'
import { type JobBody, jobCid, newNonce, signJob, verifyJobSig } from '../../src/trust/job-sig.ts'
import { generateIdentity, peerIdOf } from '../../src/trust/keys.ts'
import { signReceipt } from '../../src/trust/receipt.ts'
import { checkJobRequest, encodeMessage } from '../helpers/job-wire.ts'

type Key = Awaited<ReturnType<typeof generateIdentity>>

const inputs: NamedTensors = { x: { dtype: 'float32', dims: [1, 2], data: Float32Array.from([1, 2]) } }
const outputs: NamedTensors = { y: { dtype: 'float32', dims: [1, 1], data: Float32Array.from([5]) } }

/** What went over the wire: encode to bytes, then decode as an untrusted peer would. */
const wire = (msg: Frame): Frame => new FrameDecoder(MAX_RESULT_BYTES).push(encodeMessage(msg as never))[0]!

const rejection = async (p: Promise<unknown>): Promise<Error> => {
  try {
    await p
  } catch (err) {
    return err as Error
  }
  throw new Error('expected a rejection')
}

async function makeJob(requester: Key, ins: NamedTensors, model: CID) {
  const body: JobBody = {
    v: 1,
    model,
    input: await tensorsCid(ins),
    requester: peerIdOf(requester),
    deadline: Date.now() + 60_000,
    nonce: newNonce(),
  }
  return { body, sig: await signJob(body, requester), cid: await jobCid(body) }
}

describe('job messages', () => {
  let requester: Key
  let worker: Key
  let model: CID
  let job: Awaited<ReturnType<typeof makeJob>>
  let request: Frame

  beforeAll(async () => {
    requester = await generateIdentity()
    worker = await generateIdentity()
    model = CID.createV1(0x55, await sha256.digest(Uint8Array.of(1, 2, 3)))
    job = await makeJob(requester, inputs, model)
    request = { t: 'job', v: 1, body: job.body, sig: job.sig, inputs: encodeTensors(inputs) }
  })

  async function result(forJob = job, outs = outputs, signedOutputs = outs) {
    const receipt = await signReceipt(
      {
        v: 1,
        job: forJob.cid,
        model,
        input: forJob.body.input,
        output: await tensorsCid(signedOutputs),
        worker: peerIdOf(worker),
        requester: peerIdOf(requester),
        ep: 'wasm',
        adapter: 'cpu',
        timing: { queueUs: 10, runUs: 2000 },
        ts: Date.now(),
      },
      worker,
    )
    return wire(encodeResult(outs, receipt))
  }

  const expected = () => ({
    jobCid: job.cid,
    model,
    input: job.body.input,
    requester: peerIdOf(requester),
    worker: peerIdOf(worker),
  })

  it('accepts a valid job request', async () => {
    const checked = await checkJobRequest(wire(request))
    expect(checked.jobCid.equals(job.cid)).toBe(true)
    expect([...checked.inputs.x!.data]).toEqual([1, 2])
    await verifyJobSig(job.body, job.sig)
  })

  it('rejects a job whose input CID does not match its inputs', async () => {
    const other = { x: { ...inputs.x!, data: Float32Array.from([1, 3]) } }
    const err = await rejection(checkJobRequest(wire({ ...request, inputs: encodeTensors(other) })))
    expect(err.name).toBe('MalformedFrameError')
    expect(err.message).toMatch(/job\.body\.input/)
  })

  it('rejects a bad or foreign signature', async () => {
    const sig = new Uint8Array(job.sig)
    sig[10]! ^= 4
    expect((await rejection(checkJobRequest(wire({ ...request, sig })))).name).toBe('InvalidSignatureError')
    const forged = { ...job.body, deadline: job.body.deadline + 1 }
    expect((await rejection(checkJobRequest(wire({ ...request, body: forged })))).name).toBe(
      'InvalidSignatureError',
    )
    expect((await rejection(signJob(job.body, worker))).name).toBe('InvalidSignatureError')
  })

  it('rejects malformed fields with their path', async () => {
    const cases: [Frame, RegExp][] = [
      [{ ...request, v: 2 }, /frame\.v/],
      [{ ...request, extra: 1 }, /exactly/],
      [{ ...request, sig: 'x' }, /job\.sig/],
      [{ ...request, inputs: [1] }, /job\.inputs/],
      [{ ...request, body: { ...job.body, model: 'bafy' } }, /job\.body\.model/],
      [{ ...request, body: { ...job.body, nonce: new Uint8Array(8) } }, /job\.body\.nonce/],
      [{ ...request, body: { ...job.body, deadline: -1 } }, /job\.body\.deadline/],
      [{ ...request, t: 'result' }, /frame\.t/],
    ]
    for (const [frame, msg] of cases) {
      const err = await rejection(checkJobRequest(wire(frame)))
      expect(err.name).toBe('MalformedFrameError')
      expect(err.message).toMatch(msg)
    }
    const bad = { ...request, inputs: { x: { dtype: 'float64', dims: [1], data: new Uint8Array(8) } } }
    expect((await rejection(checkJobRequest(wire(bad)))).name).toBe('InvalidTensorError')
  })

  it('verifies a valid result', async () => {
    const { outputs: outs, receipt } = await verifyJobResult(await result(), expected())
    expect([...outs.y!.data]).toEqual([5])
    expect(receipt.body.job.equals(job.cid)).toBe(true)
  })

  it('rejects a result whose outputs differ from the signed ones', async () => {
    const swapped = { y: { ...outputs.y!, data: Float32Array.from([6]) } }
    const err = await rejection(verifyJobResult(await result(job, swapped, outputs), expected()))
    expect(err.name).toBe('OutputMismatchError')
  })

  it('rejects a receipt replayed from another job', async () => {
    const other = await makeJob(requester, inputs, model)
    const err = await rejection(verifyJobResult(await result(other), expected()))
    expect(err.name).toBe('InvalidReceiptError')
    expect(err.message).toMatch(/job/)
  })

  it('rejects a result from a worker other than the one asked', async () => {
    const err = await rejection(
      verifyJobResult(await result(), { ...expected(), worker: peerIdOf(requester) }),
    )
    expect(err.name).toBe('InvalidReceiptError')
  })

  it('validates reject frames', () => {
    expect(parseJobReject(wire({ t: 'reject', v: 1, code: 'busy', reason: 'full' })).code).toBe('busy')
    expect(() => parseJobReject({ t: 'reject', v: 1, code: 'nope', reason: '' })).toThrow(/reject\.code/)
    expect(() => parseJobReject({ t: 'reject', v: 1, code: 'busy', reason: 'x'.repeat(513) })).toThrow(
      /reject\.reason/,
    )
    expect(() =>
      encodeMessage({ t: 'reject', v: 1, code: 'busy', reason: '\u{1F600}'.repeat(1200) }),
    ).toThrow(expect.objectContaining({ name: 'FrameTooLargeError' }))
  })
})
