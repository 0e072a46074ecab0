/**
 * The dispute protocol over in-memory libp2p streams (src/dispute/wire.ts, serve.ts): bisect and the
 * referee through two remoteParty()s find the liar as they do in process, for about the same bytes;
 * malformed questions get typed `error` frames and the server goes on; malformed, refused, late or
 * forged answers fail with named errors that bisect blames on their party as transport, not lies.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import type { Stream } from '@libp2p/interface'
import { streamPair } from '@libp2p/utils'
import type { CID } from 'multiformats/cid'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { bisect } from '../../src/dispute/bisect.ts'
import {
  commitTrace,
  type DisputePlan,
  type DisputeRules,
  disputePlan,
  disputeRules,
  leafNode,
  leafOutputs,
} from '../../src/dispute/commit.ts'
import { withIntermediateOutputs } from '../../src/dispute/onnx-graph.ts'
import { localParty, type Meter, metered } from '../../src/dispute/party.ts'
import { referee } from '../../src/dispute/referee.ts'
import { type DisputeServer, serveDispute } from '../../src/dispute/serve.ts'
import { type RemoteParty, remoteParty } from '../../src/dispute/wire.ts'
import { DISPUTE_LIMITS, signCommitment } from '../../src/dispute/wire-frames.ts'
import { encodeFrame, type Frame, FrameDecoder, readFrame, sendEncoded } from '../../src/net/frame.ts'
import { concat } from '../../src/shared/bytes.ts'
import { modelCid } from '../../src/shared/cid.ts'
import { DISPUTE_PROTOCOL } from '../../src/shared/protocol.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { encodeTensors, tensorsCid } from '../../src/shared/tensor-codec.ts'
import { generateIdentity, peerIdOf } from '../../src/trust/keys.ts'
import type { CompareRule } from '../../src/trust/policy.ts'
import { lyingTrace, shifted } from '../helpers/liar-trace.ts'
import { floats, ortRun } from '../helpers/ort-run.ts'

const models = resolve(import.meta.dirname, '../../public/models')
const load = (file: string) => new Uint8Array(readFileSync(resolve(models, file)))
const run = (bytes: Uint8Array, inputs: NamedTensors) => ortRun(bytes, inputs)
const EXACT: CompareRule = { kind: 'exact' }

const open: Stream[] = []
afterEach(() => {
  for (const s of open.splice(0)) s.abort(new Error('test over'))
})
async function pair(): Promise<[Stream, Stream]> {
  const streams = await streamPair({ protocol: DISPUTE_PROTOCOL })
  open.push(...streams)
  return streams
}

/** A contributor: its key, its server (whose `run` may be a liar's) and its peer id. */
async function contributor(
  bytes: Uint8Array,
  cid: CID,
  runTrace = run,
  extra: Partial<Parameters<typeof serveDispute>[0]> = {},
) {
  const key = await generateIdentity()
  const server = serveDispute({
    key,
    model: async (c) => (c.equals(cid) ? bytes : undefined),
    run: runTrace,
    ...extra,
  })
  return { key, server, id: peerIdOf(key) }
}

interface Job {
  job: CID
  model: CID
  inputs: NamedTensors
  compare: CompareRule
}

/** A remote party asking `server` over a fresh stream pair, as `requester`. */
async function connect(
  server: DisputeServer,
  worker: string,
  job: Job,
  extra: Partial<Parameters<typeof remoteParty>[1]> = {},
  requester = 'requester',
): Promise<RemoteParty> {
  const [client, side] = await pair()
  void server.serve(side, requester)
  return remoteParty(client, { worker, ...job, ...extra })
}

/** Bisect + referee in process (metered), then over the wire; both outcomes and their costs. */
async function both(
  plan: DisputePlan,
  rules: DisputeRules,
  job: Job,
  traces: { a: NamedTensors; b: NamedTensors },
) {
  const meter: Meter = { answers: 0, bytes: 0, tensorBytes: 0 }
  const local = async (t: NamedTensors) =>
    metered(localParty(plan, await commitTrace(plan, rules, t), t), meter)
  const la = await local(traces.a)
  const lb = await local(traces.b)
  let t0 = performance.now()
  const ld = await bisect({ plan, rules, a: la, b: lb })
  const ls = await referee({ plan, rules, divergence: ld, a: la, b: lb, jobInputs: job.inputs, run })
  const localMs = performance.now() - t0

  const bytes = plan.model.bytes
  const a = await contributor(bytes, job.model, async () => traces.a)
  const b = await contributor(bytes, job.model, async () => traces.b)
  const ra = await connect(a.server, a.id, job)
  const rb = await connect(b.server, b.id, job)
  t0 = performance.now()
  await Promise.all([ra.commitment(), rb.commitment()]) // each server commits (hashes) its trace
  const commitMs = performance.now() - t0
  const commitSent = ra.wire.sent + rb.wire.sent
  t0 = performance.now()
  const d = await bisect({ plan, rules, a: ra, b: rb })
  const s = await referee({ plan, rules, divergence: d, a: ra, b: rb, jobInputs: job.inputs, run })
  const wireMs = performance.now() - t0
  const received = ra.wire.received + rb.wire.received
  const sent = ra.wire.sent + rb.wire.sent - commitSent
  await ra.close()
  await rb.close()
  return {
    local: { d: ld, s: ls, meter, ms: localMs },
    wire: { d, s, received, sent, ms: wireMs, commitMs, ra, rb },
  }
}

type Both = Awaited<ReturnType<typeof both>>
const report = (what: string, o: Both) =>
  console.log(
    `${what}: leaf ${o.wire.d.position} rounds ${o.wire.d.rounds}+${o.wire.s.rounds} → ${o.wire.s.verdict};` +
      ` wire received ${o.wire.received} B, sent ${o.wire.sent} B in questions, vs in-process answers ${o.local.meter.bytes} B;` +
      ` ${o.wire.ms.toFixed(0)} ms over the wire (after both commits, ${o.wire.commitMs.toFixed(0)} ms) vs ${o.local.ms.toFixed(0)} ms in process;` +
      ` by answer a ${JSON.stringify(o.wire.ra.wire.byAnswer)}`,
  )

const expectSame = (o: Both) => {
  expect(o.wire.d.position).toBe(o.local.d.position)
  expect(o.wire.d.rounds).toBe(o.local.d.rounds)
  expect(o.wire.s.verdict).toBe(o.local.s.verdict)
  // the wire adds frame types, signatures and varints: a few hundred bytes, not a multiple
  expect(o.wire.received).toBeGreaterThanOrEqual(o.local.meter.bytes)
  expect(o.wire.received).toBeLessThan(o.local.meter.bytes * 1.05 + 2000)
}

describe('dispute protocol over a stream', () => {
  it.each(['mlp-tiny', 'mlp-s'])('settles %s over the wire: every liar found and judged', async (name) => {
    const bytes = load(`${name}.onnx`)
    const plan = disputePlan(bytes)
    const dims = name === 'mlp-s' ? [64, 256] : [1, 16]
    const inputs = { x: floats(dims, 7) }
    const job = {
      job: await modelCid(new TextEncoder().encode(`job ${name}`)),
      model: await modelCid(bytes),
      inputs,
    }
    const honest = await run(withIntermediateOutputs(plan.model), inputs)
    for (let k = 0; k < plan.leaves.length; k++) {
      const liar = await lyingTrace(plan, honest, inputs, k, (t) => ({
        ...t,
        data: (t.data as Float32Array).map((v) => 2 * v + 1),
      }))
      const o = await both(plan, disputeRules(EXACT), { ...job, compare: EXACT }, { a: honest, b: liar })
      if (k === 2) report(`${name} exact, liar b at ${k}`, o)
      expect(o.wire.d.position).toBe(k)
      expect(o.wire.s.verdict).toBe('b-invalid')
      expectSame(o)
    }
  })

  describe('PP-OCR detection (1x3x64x256)', () => {
    const bytes = load('vendor/ch_PP-OCRv4_det_infer.onnx')
    const plan = disputePlan(bytes)
    const inputs: NamedTensors = { x: floats([1, 3, 64, 256], 4) }
    let honest: NamedTensors
    let job: Omit<Job, 'compare'>
    beforeAll(async () => {
      honest = await run(withIntermediateOutputs(plan.model), inputs)
      job = { job: await modelCid(new TextEncoder().encode('job det')), model: await modelCid(bytes), inputs }
    })

    it('finds a liar at leaf 150 (exact), the server running the real trace for the honest side', async () => {
      const liar = await lyingTrace(plan, honest, inputs, 150, shifted(0.5))
      const rules = disputeRules(EXACT)
      const o = await both(plan, rules, { ...job, compare: EXACT }, { a: honest, b: liar })
      report('det exact, liar b at 150', o)
      expect(o.wire.d.position).toBe(150)
      expect(o.wire.s.verdict).toBe('b-invalid')
      expectSame(o)
      // an honest contributor that really runs the trace commits to the same root
      const real = await contributor(bytes, job.model)
      const party = await connect(real.server, real.id, { ...job, compare: EXACT })
      const t0 = performance.now()
      const c = await party.commitment()
      console.log(
        `det commit over the wire (run + commit + sign): ${(performance.now() - t0).toFixed(0)} ms, held ${JSON.stringify(real.server.held())}`,
      )
      expect(c.root).toEqual(o.wire.d.commitments.a.root)
      expect((await party.signed()).body.leaves).toBe(plan.leaves.length)
    })

    it('finds a liar under the OCR detection tolerance', async () => {
      const compare: CompareRule = { kind: 'tolerance', atol: 1e-3, rtol: 0 }
      const liar = await lyingTrace(plan, honest, inputs, 200, shifted(0.5))
      const o = await both(plan, disputeRules(compare), { ...job, compare }, { a: liar, b: honest })
      report('det tolerance, liar a at 200', o)
      expect(o.wire.d.position).toBe(200)
      expect(o.wire.s.verdict).toBe('a-invalid')
      expectSame(o)
    })
  })
})

// --- untrusted bytes ---

const tiny = load('mlp-tiny.onnx')
const tinyPlan = disputePlan(tiny)
const tinyInputs = { x: floats([1, 16], 3) }

async function tinyJob(): Promise<Job> {
  return {
    job: await modelCid(new TextEncoder().encode('job tiny')),
    model: await modelCid(tiny),
    inputs: tinyInputs,
    compare: EXACT,
  }
}

/** A raw requester: sends frames (or bytes) and reads the server's answers. */
async function rawClient(server: DisputeServer, requester = 'raw') {
  const [client, side] = await pair()
  const served = server.serve(side, requester)
  const decoder = new FrameDecoder(DISPUTE_LIMITS.outputs)
  const closed = (cause?: Error) => cause ?? new Error('closed')
  return {
    served,
    async ask(msg: Frame | Uint8Array): Promise<Frame | null> {
      await sendEncoded(client, msg instanceof Uint8Array ? msg : encodeFrame(msg), { closed })
      return readFrame(client, decoder)
    },
    /** Sends without waiting for an answer. */
    send: (bytes: Uint8Array) => sendEncoded(client, bytes, { closed }),
    read: () => readFrame(client, decoder),
  }
}

const commitFrame = (j: Job) => ({
  t: 'commit',
  job: j.job,
  model: j.model,
  inputs: encodeTensors(j.inputs),
  compare: j.compare,
})

describe('dispute server: malformed questions', () => {
  it('answers every bad question with a typed error and goes on serving', async () => {
    const j = await tinyJob()
    const { server } = await contributor(tiny, j.model)
    const c = await rawClient(server)
    expect(await c.ask({ t: 'leaf', p: 0 })).toMatchObject({ t: 'error', code: 'no-commitment' })
    expect(await c.ask({ ...commitFrame(j), job: 'not a cid' })).toMatchObject({
      t: 'error',
      code: 'bad-request',
    })
    expect(await c.ask({ ...commitFrame(j), compare: { kind: 'topk', k: 1e9 } })).toMatchObject({
      code: 'bad-request',
    })
    expect(await c.ask({ ...commitFrame(j), extra: 1 })).toMatchObject({ code: 'bad-request' })
    expect(await c.ask({ ...commitFrame(j), model: j.job })).toMatchObject({ code: 'unknown-model' })
    expect(
      await c.ask({
        ...commitFrame(j),
        inputs: { x: { dtype: 'float32', dims: [1e9], data: new Uint8Array(4) } },
      }),
    ).toMatchObject({ code: 'bad-request' })
    expect(await c.ask(commitFrame(j))).toMatchObject({ t: 'commitment' })
    const n = tinyPlan.leaves.length
    const bad: Frame[] = [
      { t: 'leaf', p: -1 },
      { t: 'leaf', p: n },
      { t: 'leaf', p: 1e12 },
      { t: 'leaf', p: 'x' },
      { t: 'leaf', p: 0.5 },
      { t: 'leaf' },
      { t: 'leaf', p: 0, more: 1 },
      { t: 'children', from: 0, to: 1 },
      { t: 'children', from: 3, to: 2 },
      { t: 'children', from: 0, to: 2 ** 40 },
      { t: 'outputs', p: 99 },
      { t: 'chunkHashes', p: 0, name: 'no such output' },
      { t: 'chunkHashes', p: 0, name: 'x'.repeat(200) },
      { t: 'chunks', p: 0, name: leafOutputs(leafNode(tinyPlan, 0))[0]!, indices: [5] },
      { t: 'chunks', p: 0, name: leafOutputs(leafNode(tinyPlan, 0))[0]!, indices: [] },
      { t: 'chunks', p: 0, name: leafOutputs(leafNode(tinyPlan, 0))[0]!, indices: Array(65).fill(0) },
      { t: 'chunks', p: 0, name: leafOutputs(leafNode(tinyPlan, 0))[0]!, indices: [-1] },
      { t: 'what' },
      commitFrame(j),
    ]
    for (const q of bad) {
      const a = await c.ask(q)
      expect(a, JSON.stringify(q).slice(0, 80)).toMatchObject({ t: 'error', code: 'bad-request' })
      expect((a!.reason as string).length).toBeLessThanOrEqual(DISPUTE_LIMITS.reason)
    }
    // still serving
    expect(await c.ask({ t: 'leaf', p: 0 })).toMatchObject({ t: 'leaf' })
    expect(
      await c.ask({ t: 'chunks', p: 0, name: leafOutputs(leafNode(tinyPlan, 0))[0]!, indices: [0, 0] }),
    ).toMatchObject({ t: 'chunks' })
    // a question over its limit breaks the framing: one error, then the stream ends
    expect(await c.ask({ t: 'leaf', p: 0, pad: new Uint8Array(DISPUTE_LIMITS.question) })).toMatchObject({
      code: 'bad-request',
    })
    await c.served
    // and the server serves the next stream
    const d = await rawClient(server)
    expect(await d.ask(Uint8Array.of(3, 0xff, 0xff, 0xff))).toMatchObject({ code: 'bad-request' })
    await d.served
    const e = await rawClient(server)
    expect(await e.ask(commitFrame(j))).toMatchObject({ t: 'commitment' })
  })

  it('ends a stream that asks before its commitment is answered, or that goes quiet', async () => {
    const j = await tinyJob()
    const { server } = await contributor(tiny, j.model, run, { idleMs: 300 })
    const c = await rawClient(server)
    // in one chunk, the question reaches the server's decoder under the commit's limit
    await c.send(concat([encodeFrame(commitFrame(j)), encodeFrame({ t: 'leaf', p: 0 })]))
    expect(await c.read()).toMatchObject({ t: 'error', code: 'bad-request' })
    expect(await c.read()).toBeNull()
    await c.served
    const quiet = await rawClient(server)
    const t0 = performance.now()
    await quiet.served
    expect(performance.now() - t0).toBeGreaterThanOrEqual(250)
  })

  it('holds at most streamsPerPeer streams per requester', async () => {
    const j = await tinyJob()
    const { server } = await contributor(tiny, j.model, run, { streamsPerPeer: 1, idleMs: 2000 })
    const connection = { remotePeer: { toString: () => 'peer' } } as never
    const [c1, s1] = await pair()
    const [c2, s2] = await pair()
    server.handler(s1, connection)
    server.handler(s2, connection)
    const decoder = new FrameDecoder(DISPUTE_LIMITS.error)
    expect(await readFrame(c2, decoder)).toMatchObject({ t: 'error', code: 'busy' })
    const p = remoteParty(c1, { worker: peerIdOf((await contributor(tiny, j.model)).key), ...j })
    await expect(p.commitment()).rejects.toMatchObject({ name: 'InvalidSignatureError' }) // served, not refused
  })

  it('keeps one trace per requester, within its byte cap and TTL', async () => {
    const j = await tinyJob()
    let clock = 0
    const { server } = await contributor(tiny, j.model, run, { ttlMs: 1000, now: () => clock })
    const first = await rawClient(server, 'r1')
    expect(await first.ask(commitFrame(j))).toMatchObject({ t: 'commitment' })
    const second = await rawClient(server, 'r1')
    expect(await second.ask(commitFrame(j))).toMatchObject({ t: 'commitment' })
    const one = server.held()
    expect(one.traces).toBe(1)
    expect(await first.ask({ t: 'leaf', p: 0 })).toMatchObject({ code: 'expired' })
    expect(await second.ask({ t: 'leaf', p: 0 })).toMatchObject({ t: 'leaf' })
    const other = await rawClient(server, 'r2')
    expect(await other.ask(commitFrame(j))).toMatchObject({ t: 'commitment' })
    expect(server.held().traces).toBe(2)
    clock = 1000
    expect(await second.ask({ t: 'leaf', p: 0 })).toMatchObject({ code: 'expired' })
    expect(server.held()).toEqual({ traces: 0, bytes: 0 })

    const small = await contributor(tiny, j.model, run, { maxTraceBytes: 100 })
    expect(await (await rawClient(small.server)).ask(commitFrame(j))).toMatchObject({ code: 'too-large' })
    const capped = await contributor(tiny, j.model, run, { maxTotalBytes: Math.floor(one.bytes * 1.5) })
    expect(await (await rawClient(capped.server, 'x')).ask(commitFrame(j))).toMatchObject({ t: 'commitment' })
    expect(await (await rawClient(capped.server, 'y')).ask(commitFrame(j))).toMatchObject({ code: 'busy' })
    const refusing = await contributor(tiny, j.model, run, { admit: (r) => r.requester === 'ok' })
    expect(await (await rawClient(refusing.server, 'no')).ask(commitFrame(j))).toMatchObject({
      code: 'refused',
    })
  })
})

/**
 * A proxy between a remote party and a real server that may rewrite answers: `tamper(answer,
 * question)` returns the frame (or raw bytes) to pass on, or null to send nothing.
 */
async function tampered(
  server: DisputeServer,
  worker: string,
  job: Job,
  tamper: (a: Frame, q: Frame) => Frame | Uint8Array | null,
  extra: Partial<Parameters<typeof remoteParty>[1]> = {},
) {
  const [client, proxyIn] = await pair()
  const [proxyOut, side] = await pair()
  void server.serve(side, 'requester')
  const inbound = new FrameDecoder(DISPUTE_LIMITS.commit)
  const outbound = new FrameDecoder(DISPUTE_LIMITS.outputs)
  const closed = (cause?: Error) => cause ?? new Error('closed')
  void (async () => {
    for (;;) {
      const q = await readFrame(proxyIn, inbound)
      if (!q) return
      await sendEncoded(proxyOut, encodeFrame(q), { closed })
      const a = await readFrame(proxyOut, outbound)
      if (!a) return
      const out = tamper(a, q)
      if (out) await sendEncoded(proxyIn, out instanceof Uint8Array ? out : encodeFrame(out), { closed })
    }
  })().catch(() => {})
  return remoteParty(client, { worker, ...job, ...extra })
}

describe('remote party: malformed answers', () => {
  let j: Job
  let honest: NamedTensors
  beforeAll(async () => {
    j = await tinyJob()
    honest = await run(withIntermediateOutputs(tinyPlan.model), tinyInputs)
  })
  const flip = (h: Uint8Array) => Uint8Array.from(h, (x, i) => (i ? x : x ^ 1))

  it('refuses a forged commitment signature, and bisect blames that party as transport', async () => {
    const { server, id } = await contributor(tiny, j.model)
    const forged = await tampered(server, id, j, (a) => {
      const s = a.signed as { body: unknown; sig: Uint8Array }
      return a.t === 'commitment' ? { ...a, signed: { ...s, sig: flip(s.sig) } } : a
    })
    await expect(forged.commitment()).rejects.toMatchObject({ name: 'InvalidSignatureError' })
    // signed by a key that is not the connection's peer
    const other = await contributor(tiny, j.model)
    const wrongKey = await connect(other.server, id, j)
    await expect(wrongKey.commitment()).rejects.toMatchObject({ name: 'InvalidSignatureError' })
    // signed by the right key, but naming another job
    const job = await modelCid(new TextEncoder().encode('another job'))
    const c = (await commitTrace(tinyPlan, disputeRules(EXACT), honest)).commitment
    const input = await tensorsCid(tinyInputs)
    const key = (await contributor(tiny, j.model)).key
    const resigned = await signCommitment({ job, model: j.model, input, root: c.root, leaves: c.leaves }, key)
    const named = async () => {
      const liar = await contributor(tiny, j.model, run)
      return tampered(liar.server, peerIdOf(key), j, (a) =>
        a.t === 'commitment' ? { ...a, signed: resigned } : a,
      )
    }
    await expect((await named()).commitment()).rejects.toMatchObject({ name: 'MalformedFrameError' })
    const honestParty = await connect(server, id, j, {}, 'r2')
    const err = await bisect({
      plan: tinyPlan,
      rules: disputeRules(EXACT),
      a: honestParty,
      b: await named(),
    }).catch((e) => e)
    expect(err).toMatchObject({ party: 'b' })
    expect(err.name).not.toMatch(/^Dispute/)
  })

  it('fails a malformed, oversized, refused or missing answer with a named transport error', async () => {
    const { server, id } = await contributor(tiny, j.model)
    const on =
      (t: string, change: (a: Frame) => Frame | Uint8Array | null) =>
      (a: Frame): Frame | Uint8Array | null =>
        a.t === t ? change(a) : a
    const cases: [
      string,
      (a: Frame) => Frame | Uint8Array | null,
      (p: RemoteParty) => Promise<unknown>,
      string,
    ][] = [
      [
        'three children',
        on('children', (a) => ({ ...a, hashes: [...(a.hashes as []), new Uint8Array(32)] })),
        (p) => p.children(0, tinyPlan.leaves.length),
        'MalformedFrameError',
      ],
      [
        'children as text',
        on('children', (a) => ({ ...a, hashes: 'x' })),
        (p) => p.children(0, tinyPlan.leaves.length),
        'MalformedFrameError',
      ],
      [
        'a leaf answered as children',
        on('leaf', () => ({ t: 'children', hashes: [] })),
        (p) => p.leaf(0),
        'MalformedFrameError',
      ],
      [
        'an oversized leaf',
        on('leaf', (a) => ({
          ...a,
          leaf: { ...(a.leaf as object), pad: new Uint8Array(DISPUTE_LIMITS.leaf) },
        })),
        (p) => p.leaf(0),
        'FrameTooLargeError',
      ],
      [
        'a leaf node as text',
        on('leaf', (a) => ({ ...a, leaf: { ...(a.leaf as object), node: '1' } })),
        (p) => p.leaf(0),
        'MalformedFrameError',
      ],
      [
        'too many chunks',
        on('chunks', (a) => ({ ...a, chunks: [...(a.chunks as []), new Uint8Array(4)] })),
        (p) => p.chunks(0, leafOutputs(leafNode(tinyPlan, 0))[0]!, [0]),
        'MalformedFrameError',
      ],
      [
        'a bad tensor',
        on('outputs', (a) => ({
          ...a,
          tensors: { y: { dtype: 'float32', dims: [2], data: new Uint8Array(3) } },
        })),
        (p) => p.outputs(0),
        'MalformedFrameError',
      ],
      [
        'chunk hashes with a bad dtype',
        on('chunkHashes', (a) => ({ ...a, hashes: { ...(a.hashes as object), dtype: 'f16' } })),
        (p) => p.chunkHashes(0, leafOutputs(leafNode(tinyPlan, 0))[0]!),
        'MalformedFrameError',
      ],
      [
        'an error with an unknown code',
        on('leaf', () => ({ t: 'error', code: 'nope', reason: '' })),
        (p) => p.leaf(0),
        'MalformedFrameError',
      ],
      [
        'an error with a long reason',
        on('leaf', () => ({ t: 'error', code: 'internal', reason: 'x'.repeat(600) })),
        (p) => p.leaf(0),
        'MalformedFrameError',
      ],
      [
        'a refusal',
        on('leaf', () => ({ t: 'error', code: 'busy', reason: 'later' })),
        (p) => p.leaf(0),
        'PartyRefusedError',
      ],
      ['no answer', on('leaf', () => null), (p) => p.leaf(0), 'PartyTimeoutError'],
      ['garbage', on('leaf', () => Uint8Array.of(2, 0xff, 0xff)), (p) => p.leaf(0), 'MalformedFrameError'],
    ]
    for (const [what, change, question, name] of cases) {
      const p = await tampered(server, id, j, change, { timeoutMs: 200 })
      await p.commitment()
      await expect(question(p), what).rejects.toMatchObject({ name })
    }
    // a refusal carries its code; the real server refuses an out-of-range chunk
    const p = await connect(server, id, j)
    await expect(p.chunks(0, leafOutputs(leafNode(tinyPlan, 0))[0]!, [99])).rejects.toMatchObject({
      name: 'PartyRefusedError',
      code: 'bad-request',
    })
    // bisect blames a malformed answer on its party as transport, not a lie
    const liar = await contributor(tiny, j.model, async () => ({
      ...honest,
      [leafOutputs(leafNode(tinyPlan, 4))[0]!]: floats([1, 4], 1),
    }))
    const a = await connect(server, id, j, {}, 'r3')
    const b = await tampered(
      liar.server,
      liar.id,
      j,
      on('leaf', (x) => ({ ...x, leaf: 7 })),
    )
    const err = await bisect({ plan: tinyPlan, rules: disputeRules(EXACT), a, b }).catch((e) => e)
    expect(err).toMatchObject({ party: 'b', name: 'MalformedFrameError' })
  })
})
