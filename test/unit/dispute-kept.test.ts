/**
 * Traced jobs (JobBody.trace): the contributor runs the job as its trace and keeps it, so a dispute
 * about that job commits without a second run (src/dispute/kept.ts, serveDispute's traceJob).
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import type { Stream } from '@libp2p/interface'
import { streamPair } from '@libp2p/utils'
import { afterEach, describe, expect, it } from 'vitest'
import { commitTrace, disputePlan, disputeRules } from '../../src/dispute/commit.ts'
import { createKeptTraces } from '../../src/dispute/kept.ts'
import { withIntermediateOutputs } from '../../src/dispute/onnx-graph.ts'
import { serveDispute } from '../../src/dispute/serve.ts'
import { remoteParty } from '../../src/dispute/wire.ts'
import { modelCid } from '../../src/shared/cid.ts'
import { DISPUTE_PROTOCOL } from '../../src/shared/protocol.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { tensorsCid } from '../../src/shared/tensor-codec.ts'
import { jobCid, newNonce, parseJobBody } from '../../src/trust/job-sig.ts'
import { generateIdentity, peerIdOf } from '../../src/trust/keys.ts'
import { floats, ortRun } from '../helpers/ort-run.ts'

const t = (n: number): NamedTensors => ({ x: { dtype: 'float32', dims: [n], data: new Float32Array(n) } })

describe('kept traces', () => {
  it('keeps within the per-trace and total caps, oldest out first, for the ttl, and hands each out once', () => {
    let now = 0
    const k = createKeptTraces({ maxTraceBytes: 400, maxTotalBytes: 800, ttlMs: 100, now: () => now })
    expect(k.put('big', t(101))).toBe(false) // 404 bytes: over the per-trace cap
    expect(k.put('a', t(100))).toBe(true)
    expect(k.put('b', t(100))).toBe(true)
    expect(k.put('c', t(100))).toBe(true) // 1200 > 800: a, the oldest, goes
    expect(k.bytes()).toBe(800)
    expect(k.take('a')).toBeUndefined()
    expect(k.take('b')).toBeDefined()
    expect(k.take('b')).toBeUndefined() // taken once
    now = 100
    expect(k.take('c')).toBeUndefined() // expired
    expect(k.bytes()).toBe(0)
  })
})

describe('a traced job', () => {
  const open: Stream[] = []
  afterEach(() => {
    for (const s of open.splice(0)) s.abort(new Error('test over'))
  })

  it('gives the plain model outputs and lets a dispute commit with no second run', async () => {
    const bytes = new Uint8Array(readFileSync(resolve(import.meta.dirname, '../../public/models/mlp-s.onnx')))
    const model = await modelCid(bytes)
    const inputs = { x: floats([64, 256], 5) }
    const input = await tensorsCid(inputs)
    const key = await generateIdentity()
    let runs = 0
    const server = serveDispute({
      key,
      model: async () => bytes,
      run: async (m, i) => {
        runs++
        return ortRun(m, i)
      },
      ep: 'cpu',
    })
    const traced = await server.traceJob({ requester: 'r', model, input }, bytes, inputs)
    expect(runs).toBe(1)
    expect(traced.ep).toBe('cpu')
    const plain = await ortRun(bytes, inputs)
    expect(Object.keys(traced.outputs)).toEqual(Object.keys(plain))
    for (const [name, v] of Object.entries(plain)) expect(traced.outputs[name]!.data).toEqual(v.data)

    const plan = disputePlan(bytes)
    const compare = { kind: 'exact' as const }
    const expected = await commitTrace(
      plan,
      disputeRules(compare),
      await ortRun(withIntermediateOutputs(plan.model), inputs),
    )
    const body = {
      v: 1 as const,
      model,
      input,
      requester: 'r',
      deadline: 1,
      nonce: newNonce(),
      trace: true as const,
    }
    const job = await jobCid(body)
    const ask = async (requester: string) => {
      const [client, side] = await streamPair({ protocol: DISPUTE_PROTOCOL })
      open.push(client, side)
      void server.serve(side, requester)
      return remoteParty(client, { worker: peerIdOf(key), job, model, inputs, compare })
    }
    // Another requester's dispute about the same inputs finds nothing kept for it: it runs.
    const other = await ask('someone-else')
    await other.commitment()
    expect(runs).toBe(2)
    const party = await ask('r')
    expect((await party.signed()).body.root).toEqual(expected.commitment.root)
    expect(runs).toBe(2) // committed from the kept trace
  })

  it('is asked for in the signed job body, as true or not at all', () => {
    const base = { v: 1, model: 'x', input: 'y', requester: 'r', deadline: 1, nonce: newNonce() }
    const cid = 'bafkreidyllbzbuwb2fdgttvsc6notidx5yr5wgl6z2qhcptapjy3pkxbja'
    const body = (extra: object) => ({ ...base, model: { '/': cid }, input: { '/': cid }, ...extra })
    expect(() => parseJobBody(body({ trace: false }))).toThrow(/trace/)
    expect(() => parseJobBody(body({ trace: 1 }))).toThrow(/trace/)
    expect(() => parseJobBody(body({ other: true }))).toThrow(/exactly/)
  })
})
