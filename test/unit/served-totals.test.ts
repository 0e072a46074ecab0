/**
 * Served totals: the job handler reports the request and result frames' bytes apart, the controls add
 * them up, and older stored records (one `bytes`) still load.
 */

import type { Connection } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { streamPair } from '@libp2p/utils'
import { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import { createAdmission } from '../../src/compute/admission.ts'
import type { InferenceEngine } from '../../src/compute/bridge.ts'
import { createControls } from '../../src/compute/controls.ts'
import { normalizeTotals } from '../../src/compute/settings.ts'
import { createJobHandler } from '../../src/jobs/handler.ts'
import { MAX_RESULT_BYTES } from '../../src/jobs/messages.ts'
import { frameBytes } from '../../src/jobs/stream-io.ts'
import { JOB_PROTOCOL } from '../../src/shared/protocol.ts'
import { encodeTensors, tensorsCid } from '../../src/shared/tensor-codec.ts'
import { newNonce, signJob } from '../../src/trust/job-sig.ts'
import { generateIdentity, peerIdOf } from '../../src/trust/keys.ts'
import { FakeEngine, fakeModelSource, varint } from '../compliance/harness.ts'
import { encodeMessage, recvFrame } from '../helpers/job-wire.ts'

const job = { job: 'j', model: 'm', requester: 'r', startedAt: 1 }

describe('served totals', () => {
  it('loads a record from before the split: its bytes stay, in and out start at 0', () => {
    expect(normalizeTotals({ jobs: 3, computeMs: 40, bytes: 900 })).toEqual({
      jobs: 3,
      computeMs: 40,
      bytesIn: 0,
      bytesOut: 0,
      bytes: 900,
    })
    expect(normalizeTotals({ jobs: 1, bytesIn: 10, bytesOut: 5, bytes: 2 }).bytes).toBe(15)
    expect(normalizeTotals({ bytesIn: -1, bytesOut: 'x', bytes: Number.NaN })).toEqual({
      jobs: 0,
      computeMs: 0,
      bytesIn: 0,
      bytesOut: 0,
      bytes: 0,
    })
    expect(normalizeTotals(undefined).bytesIn).toBe(0)
  })

  it('adds each served job to in, out and their sum; failed jobs count nothing', async () => {
    const kept = new Map<string, unknown>([['contributor-totals', { jobs: 2, computeMs: 10, bytes: 100 }]])
    const controls = await createControls({
      store: {
        getSetting: async (k: string) => kept.get(k),
        putSetting: async (k: string, v: unknown) => void kept.set(k, v),
      } as never,
      storeName: 'test',
      selfId: 'self',
      modelSource: async () => new Uint8Array(),
      engine: {} as InferenceEngine,
      lazyEngine: true,
    })
    try {
      let events = 0
      controls.events.addEventListener('totals', () => events++)
      controls.jobEnded(job, { ok: true, runMs: 7, bytesIn: 30, bytesOut: 12, bytes: 42 })
      controls.jobEnded(job, { ok: false, code: 'cancelled' })
      expect(controls.totals()).toEqual({ jobs: 3, computeMs: 17, bytesIn: 30, bytesOut: 12, bytes: 142 })
      expect(events).toBe(1)
    } finally {
      controls.stop()
    }
    expect(kept.get('contributor-totals')).toEqual({
      jobs: 3,
      computeMs: 17,
      bytesIn: 30,
      bytesOut: 12,
      bytes: 142,
    })
  })

  it('has the job handler report the request frame as in and the result frame as out', async () => {
    const [contributor, requester] = [await generateIdentity(), await generateIdentity()]
    const models = await fakeModelSource(new TextEncoder().encode('bytes model'))
    const ended: { bytesIn?: number; bytesOut?: number; bytes?: number }[] = []
    const job = createJobHandler({
      privateKey: contributor,
      selfId: peerIdOf(contributor),
      admission: createAdmission({ maxSlots: 1, contributing: true }),
      engine: new FakeEngine(),
      models: models.source,
      log: logger('peer-compute:test:bytes'),
      adapter: () => 'cpu',
      onEnd: (_j, o) => void ended.push(o),
    })
    const inputs = { x: { dtype: 'float32' as const, dims: [1, 3], data: Float32Array.from([1, 2, 3]) } }
    const body = {
      v: 1 as const,
      model: CID.parse(models.cid),
      input: await tensorsCid(inputs),
      requester: peerIdOf(requester),
      deadline: Date.now() + 5000,
      nonce: newNonce(),
    }
    const request = encodeMessage({
      t: 'job',
      v: 1,
      body,
      sig: await signJob(body, requester),
      inputs: encodeTensors(inputs),
    })
    const [outbound, inbound] = await streamPair({ protocol: JOB_PROTOCOL })
    job.handler(inbound, { remotePeer: peerIdFromPrivateKey(requester) } as Connection)
    outbound.send(request)
    const result = await recvFrame(outbound, MAX_RESULT_BYTES, 5000)
    expect(result.t).toBe('result')
    await outbound.close()
    await expect.poll(() => ended.length).toBe(1)
    const resultBytes = frameBytes(result) + varint(frameBytes(result)).byteLength
    const requestBody = request.byteLength - varint(request.byteLength).byteLength
    expect(ended[0]).toMatchObject({ bytesIn: requestBody, bytesOut: resultBytes })
    expect(ended[0]!.bytes).toBe(requestBody + resultBytes)
  })
})
