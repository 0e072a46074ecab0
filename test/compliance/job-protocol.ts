/**
 * Compliance suite for `/peer-compute/job/1.1.0`, in the style of js-libp2p's
 * interface-compliance-tests: `tests({ setup, teardown })` runs every case against a fresh harness.
 * Honest peers use `sendJob`/`createJobHandler`; misbehaving ones write frames by hand.
 */
import type { Connection, PrivateKey, Stream } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { sendJob } from '../../src/jobs/client.ts'
import { JOB_STREAMS_MARGIN, MAX_PARTIAL_BYTES_PER_PEER } from '../../src/jobs/handler.ts'
import {
  type CheckedJobRequest,
  encodeResult,
  type JobReject,
  MAX_REASON_LENGTH,
  MAX_REJECT_BYTES,
  MAX_REQUEST_BYTES,
  parseJobReject,
} from '../../src/jobs/messages.ts'
import { sendFrame } from '../../src/jobs/stream-io.ts'
import { createStreamPool } from '../../src/jobs/stream-pool.ts'
import { JOB_PROTOCOL } from '../../src/shared/protocol.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { encodeTensors, tensorsCid } from '../../src/shared/tensor-codec.ts'
import { type JobBody, newNonce, signJob } from '../../src/trust/job-sig.ts'
import { generateIdentity, peerIdOf } from '../../src/trust/keys.ts'
import { RECEIPT_DOMAIN, type Receipt, signReceipt, verifyReceipt } from '../../src/trust/receipt.ts'
import { signingBytes } from '../../src/trust/signed.ts'
import { checkJobRequest, encodeMessage, recvFrame } from '../helpers/job-wire.ts'
import { expectedOutputs, type Harness, type HarnessFactory, varint } from './harness.ts'

export type { Harness, HarnessFactory } from './harness.ts'

const TIMEOUT_MS = 5_000
const x = (...v: number[]): NamedTensors => ({
  x: { dtype: 'float32', dims: [1, v.length], data: Float32Array.from(v) },
})

function send(h: Harness, inputs: NamedTensors, over: Partial<Parameters<typeof sendJob>[0]> = {}) {
  return sendJob({
    connection: h.connection,
    privateKey: h.requester.privateKey,
    selfId: h.requester.id,
    model: h.model,
    inputs,
    timeoutMs: TIMEOUT_MS,
    ...over,
  })
}

/** The same connection, counting the streams opened on it. */
function counting(c: Connection): { connection: Connection; opened(): number } {
  let n = 0
  const connection = {
    remotePeer: c.remotePeer,
    newStream: (protocols: string | string[], options?: Parameters<Connection['newStream']>[1]) => {
      n++
      return c.newStream(protocols, options)
    },
  } as Connection
  return { connection, opened: () => n }
}

/** The error `p` rejects with; fails the test if it resolves. */
async function failure(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p
  } catch (err) {
    return err as Error & { code?: string }
  }
  throw new Error('expected a rejection')
}

async function expectRejected(p: Promise<unknown>, code: string): Promise<void> {
  const err = await failure(p)
  expect(err.name, err.message).toBe('JobRejectedError')
  expect(err.code, err.message).toBe(code)
}

/** The contributor still serves: a following valid job gets a verified result. */
async function expectServing(h: Harness): Promise<void> {
  const inputs = x(5, 6)
  const res = await send(h, inputs)
  expect(res.outputs).toEqual(expectedOutputs(inputs))
}

/** Writes `bytes` on a fresh job stream and returns the contributor's reply, which must be a reject. */
async function rawExchange(h: Harness, bytes: Uint8Array): Promise<JobReject> {
  const stream = await h.connection.newStream(JOB_PROTOCOL)
  try {
    if (!stream.send(bytes)) await stream.onDrain()
    return parseJobReject(await recvFrame(stream, MAX_REJECT_BYTES, TIMEOUT_MS))
  } finally {
    stream.abort(new Error('exchange done'))
  }
}

/** A job frame signed by `key` (default: the requester), after `edit` changed its body. */
async function craftJob(
  h: Harness,
  edit: (b: JobBody) => void = () => {},
  key: PrivateKey = h.requester.privateKey,
) {
  const inputs = x(1, 2)
  const body: JobBody = {
    v: 1,
    model: CID.parse(h.model),
    input: await tensorsCid(inputs),
    requester: peerIdOf(key),
    deadline: Date.now() + TIMEOUT_MS,
    nonce: newNonce(),
  }
  edit(body)
  const sig = await signJob(body, key)
  return { t: 'job' as const, v: 1 as const, body, sig, inputs: encodeTensors(inputs) }
}

/** Sends a job to a rogue contributor that reads and checks it, then answers with `reply`. */
async function rogueJob(
  h: Harness,
  inputs: NamedTensors,
  reply: (req: CheckedJobRequest, stream: Stream) => Promise<void>,
  timeoutMs = TIMEOUT_MS,
) {
  const connection = await h.rogue(async (stream) => {
    await reply(await checkJobRequest(await recvFrame(stream, MAX_REQUEST_BYTES, TIMEOUT_MS)), stream)
  })
  return send(h, inputs, { connection, timeoutMs })
}

/** A receipt body as an honest worker would sign it for `req`, claiming `outputs`. */
async function receiptFor(h: Harness, req: CheckedJobRequest, outputs: NamedTensors) {
  return {
    v: 1 as const,
    job: req.jobCid,
    model: req.body.model,
    input: req.body.input,
    output: await tensorsCid(outputs),
    worker: h.contributor.id,
    requester: req.body.requester,
    ep: 'wasm',
    adapter: 'cpu',
    timing: { queueUs: 0, runUs: 1 },
    ts: Date.now(),
  }
}

async function reply(stream: Stream, outputs: NamedTensors, receipt: Receipt): Promise<void> {
  await sendFrame(stream, encodeResult(outputs, receipt))
  await stream.close()
}

export function tests(common: HarnessFactory): void {
  describe('/peer-compute/job/1.1.0 compliance', () => {
    let h: Harness

    beforeEach(async () => {
      h = await common.setup()
    })

    afterEach(async () => {
      await common.teardown(h)
    })

    it('returns a verified result for a valid job', async () => {
      const inputs = x(1, 2, 3)
      const res = await send(h, inputs)
      expect(res.outputs).toEqual(expectedOutputs(inputs))
      expect(res.worker).toBe(h.contributor.id)
      const body = (await verifyReceipt(res.receipt)).body
      expect(body.job.toString()).toBe(res.job)
      expect(body.model.toString()).toBe(h.model)
      expect(body.input.equals(await tensorsCid(inputs))).toBe(true)
      expect(body.output.equals(await tensorsCid(expectedOutputs(inputs)))).toBe(true)
      expect(body.worker).toBe(h.contributor.id)
      expect(body.requester).toBe(h.requester.id)
    })

    it("rejects with 'not-contributing' while contributing is off", async () => {
      await h.setContributing(false)
      await expectRejected(send(h, x(1)), 'not-contributing')
      await h.setContributing(true)
      await expectServing(h)
    })

    it("rejects with 'busy' while every slot runs a job", async () => {
      const release = await h.engine.hold()
      const running = Array.from({ length: h.slots }, (_, i) => send(h, x(i)))
      await h.engine.runsStarted(h.slots)
      await expectRejected(send(h, x(9)), 'busy')
      await release()
      for (const [i, r] of running.entries()) expect((await r).outputs).toEqual(expectedOutputs(x(i)))
      await expectServing(h)
    })

    it("rejects with 'unknown-model' for a model the contributor cannot get", async () => {
      await expectRejected(send(h, x(1), { model: h.unknownModel }), 'unknown-model')
      await expectServing(h)
    })

    it("answers a frame that is not dag-cbor with 'bad-request'", async () => {
      const reject = await rawExchange(h, Uint8Array.from([3, 0xff, 0xff, 0xff]))
      expect(reject.code).toBe('bad-request')
      await expectServing(h)
    })

    it("answers an oversized declared length with 'too-large' before the body is sent", async () => {
      const reject = await rawExchange(h, varint(MAX_REQUEST_BYTES + 1)) // the prefix alone
      expect(reject.code).toBe('too-large')
      await expectServing(h)
    })

    it("rejects a job signed by another key than the sending peer with 'bad-request'", async () => {
      const other = await generateIdentity()
      await expectRejected(send(h, x(1), { privateKey: other, selfId: peerIdOf(other) }), 'bad-request')
      await expectServing(h)
    })

    it("rejects a tampered requester signature with 'bad-signature'", async () => {
      const job = await craftJob(h)
      job.sig[0]! ^= 1
      expect((await rawExchange(h, encodeMessage(job))).code).toBe('bad-signature')
      await expectServing(h)
    })

    it('answers a bad signature at once, though the run started meanwhile, and stops that run', async () => {
      // The model is loaded by a first job: only then does a run start before the checks end.
      await expectServing(h)
      const release = await h.engine.hold()
      const job = await craftJob(h)
      job.sig[0]! ^= 1
      const reply = await rawExchange(h, encodeMessage(job)) // no result while the run is held
      expect(reply.code).toBe('bad-signature')
      await h.engine.runsStarted(2)
      await vi.waitFor(async () => expect(await h.engine.lastRunAborted()).toBe(true))
      await release()
      await expectServing(h)
    })

    it("rejects an input CID that does not match the inputs with 'bad-request'", async () => {
      const other = await tensorsCid(x(7, 7))
      const job = await craftJob(h, (b) => {
        b.input = other
      })
      expect((await rawExchange(h, encodeMessage(job))).code).toBe('bad-request')
      await expectServing(h)
    })

    it("rejects a job whose deadline has passed with 'deadline'", async () => {
      const job = await craftJob(h, (b) => {
        b.deadline = Date.now() - 1_000
      })
      expect((await rawExchange(h, encodeMessage(job))).code).toBe('deadline')
      await expectServing(h)
    })

    it('carries sequential jobs on one reused stream, which the contributor keeps open', async () => {
      const { connection, opened } = counting(h.connection)
      const streams = createStreamPool()
      for (let i = 0; i < 3; i++) {
        const inputs = x(i, i + 1)
        const res = await send(h, inputs, { connection, streams })
        expect(res.outputs).toEqual(expectedOutputs(inputs))
      }
      expect(opened()).toBe(1)
      const idle = await streams.acquire(connection) // still open on the contributor's side
      expect(idle.reused).toBe(true)
      streams.release(connection, idle.stream)
      streams.clear()
      await expectServing(h)
    })

    it("answers a malformed frame on a reused stream with 'bad-request'", async () => {
      const streams = createStreamPool()
      await send(h, x(1), { streams })
      const { stream, reused } = await streams.acquire(h.connection)
      expect(reused).toBe(true)
      try {
        if (!stream.send(Uint8Array.from([3, 0xff, 0xff, 0xff]))) await stream.onDrain()
        expect(parseJobReject(await recvFrame(stream, MAX_REJECT_BYTES, TIMEOUT_MS)).code).toBe('bad-request')
      } finally {
        stream.abort(new Error('exchange done'))
      }
      await expectServing(h)
    })

    it('opens a fresh stream when the contributor closed the idle one', async () => {
      const { connection, opened } = counting(h.connection)
      const streams = createStreamPool({ idleMs: 60_000 })
      await send(h, x(1), { connection, streams })
      await new Promise((r) => setTimeout(r, h.idleStreamMs + 300))
      const inputs = x(3, 4)
      expect((await send(h, inputs, { connection, streams })).outputs).toEqual(expectedOutputs(inputs))
      expect(opened()).toBe(2)
      streams.clear()
    })

    it("rejects with 'internal' when the engine fails, then keeps serving", async () => {
      await h.engine.failNextRun()
      await expectRejected(send(h, x(1)), 'internal')
      expect(await h.freeSlots()).toBe(h.slots)
      await expectServing(h)
    })

    describe('a lying contributor', () => {
      it('is caught signing a receipt for other outputs (OutputMismatchError)', async () => {
        const err = await failure(
          rogueJob(h, x(1, 2), async (req, stream) => {
            const receipt = await signReceipt(await receiptFor(h, req, x(0)), h.contributor.privateKey)
            await reply(stream, expectedOutputs(req.inputs), receipt)
          }),
        )
        expect(err.name, err.message).toBe('OutputMismatchError')
      })

      it('is caught sending a receipt signed by another key (InvalidSignatureError)', async () => {
        const other = await generateIdentity()
        const err = await failure(
          rogueJob(h, x(1, 2), async (req, stream) => {
            const outputs = expectedOutputs(req.inputs)
            const body = await receiptFor(h, req, outputs)
            const sig = new Uint8Array(await other.sign(signingBytes(RECEIPT_DOMAIN, body)))
            await reply(stream, outputs, { body, sig })
          }),
        )
        expect(err.name, err.message).toBe('InvalidSignatureError')
      })

      it("is caught replaying another job's receipt (InvalidReceiptError)", async () => {
        const earlier = await send(h, x(1, 2))
        const err = await failure(
          rogueJob(h, x(1, 2), (_req, stream) => reply(stream, earlier.outputs, earlier.receipt)),
        )
        expect(err.name, err.message).toBe('InvalidReceiptError')
      })

      it('closing the stream without a reply gives a named error, not a hang', async () => {
        const err = await failure(rogueJob(h, x(1), (_req, stream) => stream.close(), 1_000))
        expect(['MalformedFrameError', 'JobTimeoutError'], err.message).toContain(err.name)
      })

      it('is caught sending a reject frame over 4 KiB (MalformedFrameError), its text kept nowhere', async () => {
        const err = await failure(
          rogueJob(h, x(1), async (_req, stream) => {
            const reason = 'x'.repeat(64 * 1024)
            await sendFrame(stream, { t: 'reject', v: 1, code: 'bad-request', reason })
            await stream.close()
          }),
        )
        expect(err.name, err.message.slice(0, 200)).toBe('MalformedFrameError')
        expect(err.message.length).toBeLessThan(200)
      })

      it('is caught sending a reject with an over-long reason or an unknown code', async () => {
        for (const frame of [
          { t: 'reject', v: 1, code: 'busy', reason: 'y'.repeat(MAX_REASON_LENGTH + 1) },
          { t: 'reject', v: 1, code: 'made-up', reason: 'no' },
          { t: 'reject', v: 1, code: 'busy' },
        ]) {
          const err = await failure(
            rogueJob(h, x(1), async (_req, stream) => {
              await sendFrame(stream, frame)
              await stream.close()
            }),
          )
          expect(err.name, err.message).toBe('MalformedFrameError')
          expect(err.message).not.toContain('yyyy')
        }
      })

      it(`a well-formed refusal keeps its code and a reason of at most ${MAX_REASON_LENGTH} characters`, async () => {
        const reason = 'z'.repeat(MAX_REASON_LENGTH)
        const err = await failure(
          rogueJob(h, x(1), async (_req, stream) => {
            await sendFrame(stream, { t: 'reject', v: 1, code: 'unknown-model', reason })
            await stream.close()
          }),
        )
        expect(err.name).toBe('JobRejectedError')
        expect(err.code).toBe('unknown-model')
        expect(err.message).toContain(reason)
      })

      it('staying silent gives JobTimeoutError within the timeout', async () => {
        const started = Date.now()
        const err = await failure(rogueJob(h, x(1), () => new Promise(() => {}), 500))
        expect(err.name, err.message).toBe('JobTimeoutError')
        expect(Date.now() - started).toBeLessThan(3_000)
      })
    })

    it('refuses job streams from one peer past its slots plus a margin, at once, with busy', async () => {
      const limit = h.slots + JOB_STREAMS_MARGIN
      const held: Stream[] = []
      for (let i = 0; i < limit; i++) {
        const s = await h.connection.newStream(JOB_PROTOCOL)
        s.send(Uint8Array.of(0x80)) // the first byte of a length that never completes
        held.push(s)
      }
      const started = Date.now()
      const over = await h.connection.newStream(JOB_PROTOCOL)
      const reject = parseJobReject(await recvFrame(over, MAX_REJECT_BYTES, TIMEOUT_MS))
      expect(reject.code).toBe('busy')
      expect(Date.now() - started).toBeLessThan(1_000)
      for (const s of held) s.abort(new Error('done'))
      await vi.waitFor(() => expectServing(h), { timeout: TIMEOUT_MS })
    })

    it("bounds the bytes one peer's partial frames hold, answering busy past it", async () => {
      // Three partial frames of 10 MiB each: the third passes MAX_PARTIAL_BYTES_PER_PEER (24 MiB).
      const part = 10 * 1024 * 1024
      const streams: Stream[] = []
      const replies: Promise<JobReject>[] = []
      for (let i = 0; i < 3; i++) {
        const s = await h.connection.newStream(JOB_PROTOCOL)
        const declared = varint(MAX_REQUEST_BYTES - 1)
        const bytes = new Uint8Array(declared.byteLength + part)
        bytes.set(declared)
        if (!s.send(bytes)) await s.onDrain()
        streams.push(s)
        replies.push(recvFrame(s, MAX_REJECT_BYTES, TIMEOUT_MS).then(parseJobReject))
      }
      const first = await Promise.race(replies)
      expect(first.code).toBe('busy')
      expect(MAX_PARTIAL_BYTES_PER_PEER).toBeLessThan(3 * part)
      for (const s of streams) s.abort(new Error('done'))
      await expectServing(h)
    })

    it("aborting the requester's signal cancels the contributor's run and frees its slot", async () => {
      const release = await h.engine.hold()
      const ac = new AbortController()
      const pending = send(h, x(1), { signal: ac.signal })
      await h.engine.runsStarted(1)
      ac.abort()
      const err = await failure(pending)
      expect(err.name, err.message).toBe('AbortError')
      await vi.waitFor(async () => {
        expect(await h.engine.lastRunAborted()).toBe(true)
        expect(await h.freeSlots()).toBe(h.slots)
      })
      await release()
      await expectServing(h)
    })
  })
}
