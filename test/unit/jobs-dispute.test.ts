/**
 * The requester's disputer (src/jobs/dispute.ts) over in-memory dispute streams to two contributors
 * serving mlp-tiny traces, over cuts: a liar is found and judged invalid with a record that verifies, a side
 * whose trace does not end in the result it signed is caught before any bisection, and missing
 * links, missing models, silent parties and cancellation leave the dispute undecided.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import type { PrivateKey, Stream } from '@libp2p/interface'
import { streamPair } from '@libp2p/utils'
import type { CID } from 'multiformats/cid'
import { afterEach, describe, expect, it } from 'vitest'
import { disputePlan, disputeRules } from '../../src/dispute/commit.ts'
import { withIntermediateOutputs } from '../../src/dispute/onnx-graph.ts'
import { verifyCutRecord } from '../../src/dispute/record-cuts.ts'
import { serveDispute } from '../../src/dispute/serve.ts'
import { createDisputer, type DisputeLinks, quorumDispute } from '../../src/jobs/dispute.ts'
import { type QuorumState, type Replica, runQuorum } from '../../src/jobs/quorum.ts'
import { encodeFrame, type Frame, FrameDecoder, readFrame, sendEncoded } from '../../src/net/frame.ts'
import { modelCid } from '../../src/shared/cid.ts'
import { DISPUTE_PROTOCOL } from '../../src/shared/protocol.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { tensorsCid } from '../../src/shared/tensor-codec.ts'
import { generateIdentity, peerIdOf } from '../../src/trust/keys.ts'
import { type CompareRule, policyFor } from '../../src/trust/policy.ts'
import {
  buildQuorumRecord,
  encodeQuorumRecord,
  type QuorumDispute,
  verifyQuorumRecord,
} from '../../src/trust/quorum-record.ts'
import { type Receipt, signReceipt } from '../../src/trust/receipt.ts'
import type { Outcome } from '../../src/trust/reputation.ts'
import { lyingTrace, shifted } from '../helpers/liar-trace.ts'
import { floats, ortRun } from '../helpers/ort-run.ts'

const bytes = new Uint8Array(readFileSync(resolve(import.meta.dirname, '../../public/models/mlp-tiny.onnx')))
const plan = disputePlan(bytes)
const model = await modelCid(bytes)
const inputs: NamedTensors = { x: floats([1, 16], 11) }
const input = await tensorsCid(inputs)
const compare: CompareRule = { kind: 'tolerance', atol: 1e-4, rtol: 1e-4 }
const job = { model: model.toString(), inputs, compare }
const out = plan.model.outputs[0]!
const honest = await ortRun(withIntermediateOutputs(plan.model), inputs)
const liar = await lyingTrace(plan, honest, inputs, 1, shifted(0.5))

const open: Stream[] = []
afterEach(() => {
  for (const s of open.splice(0)) s.abort(new Error('test over'))
})

const serverOf = (key: PrivateKey, trace: NamedTensors) =>
  serveDispute({
    key,
    model: async (c: CID) => (c.equals(model) ? bytes : undefined),
    run: async () => trace,
  })

/**
 * A contributor that answers its first `cut` (the binding check's) from `first` and every other
 * question from `rest`, both signed with its key: one dispute stream, two traces.
 */
function twoFaced(first: NamedTensors, rest: NamedTensors) {
  return (side: Stream, key: PrivateKey) => {
    const servers = [serverOf(key, first), serverOf(key, rest)]
    void (async () => {
      const pairs = await Promise.all(servers.map(() => streamPair({ protocol: DISPUTE_PROTOCOL })))
      pairs.forEach(([, s], i) => void servers[i]!.serve(s, 'requester'))
      open.push(...pairs.flat())
      const decoders = [new FrameDecoder(1 << 26), new FrameDecoder(1 << 26), new FrameDecoder(1 << 26)]
      const send = (s: Stream, f: Frame) =>
        sendEncoded(s, encodeFrame(f, 1 << 26), { closed: () => new Error('closed') })
      const ask = async (i: number, f: Frame) => {
        await send(pairs[i]![0], f)
        return (await readFrame(pairs[i]![0], decoders[i]!))!
      }
      let cuts = 0
      for (let f = await readFrame(side, decoders[2]!); f; f = await readFrame(side, decoders[2]!)) {
        if (f.t === 'commit') {
          const [answer] = await Promise.all([ask(0, f), ask(1, f)])
          await send(side, answer)
        } else await send(side, await ask(f.t === 'cut' && cuts++ === 0 ? 0 : 1, f))
      }
    })().catch(() => {})
  }
}

/** A contributor serving `trace` over dispute streams; its replica signed `signed` (default: the trace's output). */
async function contributor(
  trace: NamedTensors,
  n: number,
  signed: NamedTensors = trace,
  silent = false,
  serveBy?: (side: Stream, key: PrivateKey) => void,
) {
  const key = await generateIdentity()
  const peer = peerIdOf(key)
  const server = serverOf(key, trace)
  const outputs = { [out]: signed[out]! }
  const jobCid = await tensorsCid({ n: { dtype: 'float32', dims: [1], data: Float32Array.of(n) } })
  const receipt = await signReceipt(
    {
      v: 1,
      job: jobCid,
      model,
      input,
      output: await tensorsCid(outputs),
      worker: peer,
      requester: 'requester',
      ep: 'wasm',
      adapter: 'none',
      timing: { queueUs: 0, runUs: 1000 },
      ts: 0,
    },
    key,
  )
  const replica: Replica = {
    peer,
    status: 'ok',
    startedAt: 0,
    result: {
      job: jobCid.toString(),
      outputs,
      receipt,
      outputCid: receipt.body.output.toString(),
      roundTripMs: 1,
    },
  }
  const link = {
    newStream: async () => {
      const [client, side] = await streamPair({ protocol: DISPUTE_PROTOCOL })
      open.push(client, side)
      if (serveBy) serveBy(side, key)
      else if (!silent) void server.serve(side, 'requester')
      return client
    },
  }
  return { peer, replica, link }
}

type Contributor = Awaited<ReturnType<typeof contributor>>
const linksTo = (...cs: Contributor[]): DisputeLinks => ({
  direct: (peer) => cs.find((c) => c.peer === peer)?.link as never,
})
const disputerFor = (links: DisputeLinks, extra = {}) =>
  createDisputer({
    links,
    modelBytes: async (m) => (m === model.toString() ? bytes : undefined),
    run: ortRun,
    answerTimeoutMs: 2000,
    commitTimeoutMs: 2000,
    ...extra,
  })
const never = new AbortController().signal

/** A quorum record's v2 dispute, tampered each way a forger might try, is refused with or without the model. */
async function rejectsTampered(
  dispute: QuorumDispute,
  members: { receipt: Receipt; outputs: NamedTensors }[],
  quorum: number,
) {
  const record = (change: (r: Record<string, unknown>) => void) => {
    const r = dagCbor.decode(dispute.record) as Record<string, unknown>
    change(r)
    return dagCbor.encode(r)
  }
  // The compare rule and the record's rules changed together: the cuts signed the rules they were asked under.
  const loose: CompareRule = { kind: 'tolerance', atol: 1, rtol: 1 }
  const variants: [string, QuorumDispute, CompareRule?][] = [
    [
      'a looser compare rule, and the rules to match',
      { ...dispute, record: record((r) => (r.rules = disputeRules(loose))) },
      loose,
    ],
    ['the sides swapped', { ...dispute, a: dispute.b, b: dispute.a, side: dispute.side === 'a' ? 'b' : 'a' }],
    ["the record's sides swapped", { ...dispute, record: record((r) => ([r.a, r.b] = [r.b, r.a])) }],
    ["a side's receipt another job's", { ...dispute, b: { ...dispute.b, receipt: dispute.a.receipt } }],
    [
      'stricter rules than the compare rule',
      {
        ...dispute,
        record: record((r) => {
          r.rules = disputeRules({ kind: 'tolerance', atol: 1e-12, rtol: 0 })
        }),
      },
    ],
    ['a referee rule of its own', { ...dispute, record: record((r) => (r.compare = { kind: 'exact' })) }],
    ['the verdict turned', { ...dispute, record: record((r) => (r.verdict = 'a-invalid')) }],
  ]
  for (const [what, forged, rule] of variants) {
    const bytes = encodeQuorumRecord(buildQuorumRecord(members, quorum, rule ?? compare, forged))
    await expect(verifyQuorumRecord(bytes, 2), `${what}, no model`).rejects.toThrow()
    await expect(verifyQuorumRecord(bytes, 2, { plan, run: ortRun }), what).rejects.toThrow()
  }
}

describe('createDisputer', () => {
  it('finds the liar, judges it invalid, and leaves a record that verifies', async () => {
    const a = await contributor(honest, 1)
    const b = await contributor(liar, 2)
    const o = await disputerFor(linksTo(a, b)).dispute(job, a.replica, b.replica, never)
    expect(o.verdict).toBe('b-invalid')
    expect(o.record).toBeInstanceOf(Uint8Array)
    const check = await verifyCutRecord(o.record!, { plan, run: ortRun })
    expect(check).toMatchObject({ verdict: 'b-invalid', proven: true, position: 1 })
    // Each side's signed cut at the diverging leaf, in the record, names its own replica's job.
    const record = dagCbor.decode(o.record!) as { a: { hi: Uint8Array }; b: { hi: Uint8Array } }
    for (const [side, r] of [
      [record.a, a],
      [record.b, b],
    ] as const) {
      const cut = dagCbor.decode(side.hi) as { body: { job: CID; position: number } }
      expect(cut.body).toMatchObject({ position: 1 })
      expect(cut.body.job.toString()).toBe(r.replica.result!.job)
    }
    expect(o.signed).toBeUndefined() // nothing beside a v2 record for the journal to keep
    // The liar on side a: judged the same way round.
    const swapped = await disputerFor(linksTo(a, b)).dispute(job, b.replica, a.replica, never)
    expect(swapped.verdict).toBe('a-invalid')
  })

  it('settles a job through runQuorum: the liar invalid, a third replica agrees, a record with the dispute', async () => {
    const a = await contributor(honest, 1)
    const b = await contributor(liar, 2)
    const c = await contributor(honest, 3)
    const disputer = disputerFor(linksTo(a, b))
    const outcomes: [string, Outcome][] = []
    const cs = [a, b, c]
    const p = policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: false })
    const q: QuorumState = { replicas: [], target: 2, quorum: 2, adaptiveSingle: false }
    await runQuorum(
      q,
      p,
      {
        pick: (exclude) => cs.find((c) => !exclude.has(c.peer))?.peer,
        eligible: (exclude) => cs.filter((c) => !exclude.has(c.peer)).length,
        capacityChanged: () => new Promise((r) => setTimeout(r, 5)),
        dispatch: async (peer) => {
          const r = cs.find((c) => c.peer === peer)!.replica.result!
          return { job: r.job, worker: peer, outputs: r.outputs, receipt: r.receipt, roundTripMs: 1 }
        },
        singleReplicaOk: () => false,
        suspicious: () => false,
        recordOutcome: async (peer, o) => void outcomes.push([peer, o]),
        save: async () => {},
        dispute: (x, y, signal) => disputer.dispute(job, x, y, signal),
      },
      Date.now() + 20_000,
    )
    expect(q.state).toBe('verified')
    expect(q.replicas).toHaveLength(3)
    expect(outcomes).toEqual([
      [b.peer, 'invalid'],
      [a.peer, 'valid'],
      [c.peer, 'valid'],
    ])
    const dispute = quorumDispute(q)!
    const members = [a, c].map((x) => ({
      receipt: x.replica.result!.receipt,
      outputs: x.replica.result!.outputs,
    }))
    const rec = encodeQuorumRecord(buildQuorumRecord(members, q.quorum, compare, dispute))
    const checked = await verifyQuorumRecord(rec, 2, { plan, run: ortRun })
    expect(checked.workers).toEqual([a.peer, c.peer])
    expect(checked.dispute).toMatchObject({ verdict: 'b-invalid', other: b.peer, proven: true })
    // Without the model: the v2 record's signed cuts only.
    await expect(verifyQuorumRecord(rec, 2)).resolves.toMatchObject({
      dispute: { verdict: 'b-invalid', other: b.peer, checked: 'commitments', proven: false },
    })
    await rejectsTampered(dispute, members, q.quorum)
  })

  it('calls honest noise drift, accepts the closer side, and that record verifies too', async () => {
    const tight: CompareRule = { kind: 'tolerance', atol: 1e-9, rtol: 0 }
    let seed = 9
    const noisy: NamedTensors = {}
    for (const [name, t] of Object.entries(honest)) {
      const data = (t.data as Float32Array).map((v) => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31
        return v + (seed / 2 ** 30 - 1) * 1e-6
      })
      noisy[name] = { ...t, data }
    }
    const a = await contributor(honest, 1)
    const b = await contributor(noisy, 2)
    const o = await disputerFor(linksTo(a, b)).dispute(
      { ...job, compare: tight },
      a.replica,
      b.replica,
      never,
    )
    expect(o).toMatchObject({ verdict: 'drift', closer: 'a' })
    const q: QuorumState = {
      replicas: [a.replica, b.replica],
      target: 2,
      quorum: 2,
      adaptiveSingle: false,
      state: 'verified',
      dispute: {
        verdict: 'drift',
        accepted: 'a',
        peers: [a.peer, b.peer],
        record: o.record!,
        alone: true,
      },
    }
    const member = { receipt: a.replica.result!.receipt, outputs: a.replica.result!.outputs }
    const rec = encodeQuorumRecord(buildQuorumRecord([member], 1, tight, quorumDispute(q)))
    await expect(verifyQuorumRecord(rec, 1, { plan, run: ortRun })).resolves.toMatchObject({
      dispute: { verdict: 'drift', other: b.peer, proven: true },
    })
  })

  it('judges a side whose trace does not end in the result it signed invalid, without a record', async () => {
    const a = await contributor(honest, 1)
    // It commits to the honest trace, but signed the liar's result.
    const b = await contributor(honest, 2, liar)
    const o = await disputerFor(linksTo(a, b)).dispute(job, a.replica, b.replica, never)
    expect(o.verdict).toBe('b-invalid')
    expect(o.reason).toMatch(/result it signed/)
    expect(o.record).toBeUndefined() // the quorum then buys a replica, as before
  })

  it('proves lying a side that shows the binding check one last cut and the search another', async () => {
    const a = await contributor(honest, 1)
    // Its result and first cut N-1 are the liar's; the search then meets an honest trace.
    const b = await contributor(liar, 2, liar, false, twoFaced(liar, honest))
    const o = await disputerFor(linksTo(a, b)).dispute(job, a.replica, b.replica, never)
    expect(o).toMatchObject({ verdict: 'b-invalid', reason: expect.stringMatching(/^DisputeProofError/) })
    expect(o.record).toBeUndefined() // proven, but no record carries it: the quorum buys a replica
  })

  it('is undecided without a link, without the model, on a silent party and when cancelled', async () => {
    const a = await contributor(honest, 1)
    const b = await contributor(liar, 2)
    const noLink = await disputerFor(linksTo(a)).dispute(job, a.replica, b.replica, never)
    expect(noLink).toMatchObject({ verdict: 'undecided', reason: expect.stringMatching(/no direct link/) })
    const noModel = await disputerFor(linksTo(a, b), { modelBytes: async () => undefined }).dispute(
      job,
      a.replica,
      b.replica,
      never,
    )
    expect(noModel.verdict).toBe('undecided')
    const silent = await contributor(liar, 3, liar, true)
    const late = await disputerFor(linksTo(a, silent), { commitTimeoutMs: 200 }).dispute(
      job,
      a.replica,
      silent.replica,
      never,
    )
    expect(late).toMatchObject({ verdict: 'undecided', timedOut: ['b'] })
    const t0 = Date.now()
    const cancelled = await disputerFor(linksTo(a, silent)).dispute(
      job,
      a.replica,
      silent.replica,
      AbortSignal.timeout(100),
    )
    expect(cancelled.verdict).toBe('undecided')
    expect(Date.now() - t0).toBeLessThan(1500)
  })
})
