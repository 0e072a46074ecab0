/**
 * Disputes over cuts on the wire (src/dispute/wire-cuts.ts, serve-cuts.ts): bisectCuts through two
 * remoteCutParty()s against real servers finds the liar's leaf as it does in process; whole tensors
 * come back as committed; every malformed cut question gets a typed `error` frame and the server
 * goes on; a commitment's mode fixes the questions it answers; malformed, oversized, refused or late
 * answers fail with named transport errors (never `Dispute*`).
 */
import type { PrivateKey, Stream } from '@libp2p/interface'
import { streamPair } from '@libp2p/utils'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type BisectCutsOptions, bisectCuts } from '../../src/dispute/bisect-cuts.ts'
import { disputeRules, exactHash, leafNode } from '../../src/dispute/commit.ts'
import { createCutCommitter, MAX_CUT_BYTES } from '../../src/dispute/cut-commit.ts'
import { cutAt, leafReads } from '../../src/dispute/cuts.ts'
import { type DisputeServer, type DisputeServerOptions, serveDispute } from '../../src/dispute/serve.ts'
import { type RemoteCutParty, remoteCutParty } from '../../src/dispute/wire-cuts.ts'
import { DISPUTE_LIMITS } from '../../src/dispute/wire-frames.ts'
import { encodeFrame, type Frame, FrameDecoder, readFrame, sendEncoded } from '../../src/net/frame.ts'
import { DISPUTE_PROTOCOL } from '../../src/shared/protocol.ts'
import { type NamedTensors, tensorsByteLength } from '../../src/shared/tensor.ts'
import { encodeTensors } from '../../src/shared/tensor-codec.ts'
import { generateIdentity, peerIdOf } from '../../src/trust/keys.ts'
import type { CompareRule } from '../../src/trust/policy.ts'
import { tracedJob } from '../helpers/cut-trace.ts'
import { floats, ortRun } from '../helpers/ort-run.ts'

type Traced = Awaited<ReturnType<typeof tracedJob>>
const EXACT: CompareRule = { kind: 'exact' }
const TOLERANCE: CompareRule = { kind: 'tolerance', atol: 1e-3, rtol: 1e-2 }

const open: Stream[] = []
afterEach(() => {
  for (const s of open.splice(0)) s.abort(new Error('test over'))
})
async function pair(): Promise<[Stream, Stream]> {
  const streams = await streamPair({ protocol: DISPUTE_PROTOCOL })
  open.push(...streams)
  return streams
}

/** A contributor serving `t`'s model (running its real trace unless `extra` says otherwise). */
async function contributor(t: Traced, extra: Partial<DisputeServerOptions> = {}) {
  const key = await generateIdentity()
  const counts = { runs: 0 }
  const server = serveDispute({
    key,
    model: async (c) => (c.equals(t.job.model) ? t.plan.model.bytes : undefined),
    run: async (m, i) => {
      counts.runs++
      return ortRun(m, i)
    },
    ...extra,
  })
  return { key, server, id: peerIdOf(key), counts }
}
type Contributor = Awaited<ReturnType<typeof contributor>>

const partyOptions = (t: Traced, worker: string, compare: CompareRule) => ({
  worker,
  job: t.job.job,
  model: t.job.model,
  input: t.job.input,
  inputs: t.inputs,
  compare,
})

/** A remote cut party asking `c`'s server over a fresh stream pair, as `requester`. */
async function connect(
  t: Traced,
  c: Contributor,
  compare: CompareRule,
  extra: Partial<Parameters<typeof remoteCutParty>[1]> = {},
  requester = 'requester',
): Promise<RemoteCutParty> {
  const [client, side] = await pair()
  void c.server.serve(side, requester)
  return remoteCutParty(client, { ...partyOptions(t, c.id, compare), ...extra })
}

const search = (t: Traced, compare: CompareRule, a: RemoteCutParty, b: RemoteCutParty, ids: string[]) =>
  bisectCuts({
    plan: t.plan,
    rules: disputeRules(compare),
    a,
    b,
    workers: { a: ids[0]!, b: ids[1]! },
    job: t.job,
    inputs: t.inputs,
  })

/** The same search in process, over cut committers with the same keys. */
async function local(t: Traced, compare: CompareRule, traces: NamedTensors[], keys: PrivateKey[]) {
  const rules = disputeRules(compare)
  const [a, b] = traces.map((trace, k) =>
    createCutCommitter({ trace, plan: t.plan, rules, key: keys[k]!, ...t.job }),
  )
  const party = (c: typeof a) => ({
    cut: (p: number) => c!.commit(p),
    chunkHashes: (n: string) => c!.chunkHashes(n),
    chunks: (n: string, i: number[]) => c!.chunks(n, i),
    tensor: (n: string) => c!.tensor(n),
  })
  const o: BisectCutsOptions = {
    plan: t.plan,
    rules,
    a: party(a),
    b: party(b),
    workers: { a: peerIdOf(keys[0]!), b: peerIdOf(keys[1]!) },
    job: t.job,
    inputs: t.inputs,
  }
  return bisectCuts(o)
}

/** Every tensor leaf `d.leaf` reads, fetched from `party`, hashes to what `side`'s cut lo committed. */
async function checkReads(
  t: Traced,
  d: Awaited<ReturnType<typeof search>>,
  party: RemoteCutParty,
  side: 'a' | 'b',
  trace: NamedTensors,
) {
  const lo = d.cuts.lo[side].body
  const names = leafReads(t.plan, d.leaf)
  expect(names.length).toBeGreaterThan(0)
  for (const name of names) {
    const got = await party.tensor(name)
    expect(got).toEqual(trace[name])
    expect(await exactHash(got)).toEqual(lo.tensors.find((c) => c.name === name)!.exact)
  }
}

describe('bisectCuts over the wire: mlp-tiny', () => {
  let t: Traced
  let honest: Contributor
  beforeAll(async () => {
    t = await tracedJob('mlp-tiny.onnx', { x: floats([1, 16], 7) })
    honest = await contributor(t)
  })

  it('exact: finds a liar at every leaf, as in process, and hands out the leaf’s inputs as committed', async () => {
    const n = t.plan.leaves.length
    for (let at = 0; at < n; at++) {
      const trace = await t.liar(at, 0.5)
      const liar = await contributor(t, { lie: () => trace })
      const a = await connect(t, honest, EXACT, {}, `r${at}`)
      const b = await connect(t, liar, EXACT)
      expect(await a.ready()).toBe(n)
      const d = await search(t, EXACT, a, b, [honest.id, liar.id])
      expect([d.leaf, d.node]).toEqual([at, t.plan.leaves[at]])
      const l = await local(t, EXACT, [t.honest, trace], [honest.key, liar.key])
      expect([d.leaf, d.rounds, d.probes]).toEqual([l.leaf, l.rounds, l.probes])
      // signatures are deterministic: the wire carries exactly the cuts the committer signed
      expect(d.cuts.hi.b.signed).toEqual(l.cuts.hi.b.signed)
      await checkReads(t, d, a, 'a', t.honest)
      await checkReads(t, d, b, 'b', trace)
      await a.close()
      await b.close()
    }
    expect(honest.counts.runs).toBe(n) // one trace per commit, however many questions
  })

  it('tolerance: a straddle is settled over tensorHashes and tensorChunks', async () => {
    const trace = await t.liar(1, 0.5)
    const liar = await contributor(t, { lie: () => trace })
    const a = await connect(t, honest, TOLERANCE, {}, 'tol')
    const b = await connect(t, liar, TOLERANCE)
    const d = await search(t, TOLERANCE, a, b, [honest.id, liar.id])
    expect(d.leaf).toBe(1)
    expect(d.disagreement?.diff).toBeGreaterThan(0.4)
    expect(a.wire.byAnswer.tensorHashes).toBeGreaterThan(0)
    expect(b.wire.byAnswer.tensorChunks).toBeGreaterThan(0)
    await checkReads(t, d, b, 'b', trace)
  })

  it('the first question waits on one commit; ready() asks no second one', async () => {
    const c = await contributor(t)
    const p = await connect(t, c, EXACT)
    const [cut, leaves] = await Promise.all([p.cut(-1), p.ready(), p.ready()])
    expect(cut).toBeInstanceOf(Uint8Array)
    expect(leaves).toBe(t.plan.leaves.length)
    expect(await p.ready()).toBe(leaves)
    expect(c.counts.runs).toBe(1)
    expect(p.wire.byAnswer.ready).toBeGreaterThan(0)
    expect(p.wire.frames).toBe(2)
  })
})

describe('bisectCuts over the wire: PP-OCR detection (1x3x64x256)', () => {
  it('finds a liar at leaf 150 whose lying trace was kept from the job (no second run)', async () => {
    const t = await tracedJob('vendor/ch_PP-OCRv4_det_infer.onnx', { x: floats([1, 3, 64, 256], 4) })
    const trace = await t.liar(150, 0.5)
    const honest = await contributor(t)
    const liar = await contributor(t, { lie: () => trace })
    const req = { requester: 'requester', model: t.job.model, input: t.job.input }
    await liar.server.traceJob(req, t.plan.model.bytes, t.inputs)
    expect(liar.counts.runs).toBe(1)
    const a = await connect(t, honest, EXACT)
    const b = await connect(t, liar, EXACT)
    const t0 = performance.now()
    const d = await search(t, EXACT, a, b, [honest.id, liar.id])
    console.log(
      `det over cuts: leaf ${d.leaf} in ${d.rounds} rounds, ${(performance.now() - t0).toFixed(0)} ms;` +
        ` received a ${a.wire.received} B, b ${b.wire.received} B`,
    )
    expect(d.leaf).toBe(150)
    expect(liar.counts.runs).toBe(1) // the commit took the kept trace
    await checkReads(t, d, b, 'b', trace)
  })
})

// --- untrusted bytes ---

/** A raw requester: sends frames and reads the server's answers. */
async function rawClient(server: DisputeServer, requester = 'raw') {
  const [client, side] = await pair()
  const served = server.serve(side, requester)
  const decoder = new FrameDecoder(DISPUTE_LIMITS.outputs)
  const closed = (cause?: Error) => cause ?? new Error('closed')
  return {
    served,
    async ask(msg: Frame): Promise<Frame | null> {
      await sendEncoded(client, encodeFrame(msg), { closed })
      return readFrame(client, decoder)
    },
  }
}

/** A commit question for `t`, in cuts mode unless `more` says otherwise (`{}`: a tree). */
const commitFrame = (t: Traced, more: Record<string, unknown> = { cuts: true }): Frame => ({
  t: 'commit',
  job: t.job.job,
  model: t.job.model,
  inputs: encodeTensors(t.inputs),
  compare: EXACT,
  ...more,
})

describe('dispute server: cut questions', () => {
  let t: Traced
  let live: string
  beforeAll(async () => {
    t = await tracedJob('mlp-tiny.onnx', { x: floats([1, 16], 3) })
    live = cutAt(t.cp, 0)[0]!
  })

  it('answers every malformed cut question with a typed error and goes on serving', async () => {
    const { server } = await contributor(t)
    const c = await rawClient(server)
    expect(await c.ask({ t: 'cut', p: 0 })).toMatchObject({ t: 'error', code: 'no-commitment' })
    for (const cuts of [false, 1, 'yes'])
      expect(await c.ask(commitFrame(t, { cuts }))).toMatchObject({ t: 'error', code: 'bad-request' })
    const n = t.plan.leaves.length
    expect(await c.ask(commitFrame(t))).toEqual({ t: 'ready', leaves: n })
    const initializer = leafNode(t.plan, 0).inputs.find((i) => !['node', 'input'].includes(i.source.kind))
    // [question, what the reason starts with]: its shape, the committer's refusal, or the mode's
    const shape = 'MalformedFrameError'
    const none = 'InvalidOptionError'
    const bad: [Frame, string][] = [
      [{ t: 'cut' }, shape],
      [{ t: 'cut', p: -2 }, shape],
      [{ t: 'cut', p: 2 ** 60 }, shape],
      [{ t: 'cut', p: 0.5 }, shape],
      [{ t: 'cut', p: '1' }, shape],
      [{ t: 'cut', p: 0, more: 1 }, shape],
      [{ t: 'cut', p: n }, none],
      [{ t: 'tensorHashes' }, shape],
      [{ t: 'tensorHashes', name: '' }, shape],
      [{ t: 'tensorHashes', name: 'x'.repeat(200) }, shape],
      [{ t: 'tensorHashes', name: 7 }, shape],
      [{ t: 'tensorHashes', name: live, p: 0 }, shape],
      [{ t: 'tensorHashes', name: 'no such tensor' }, none],
      [{ t: 'tensorChunks', name: live }, shape],
      [{ t: 'tensorChunks', name: live, indices: [] }, shape],
      [{ t: 'tensorChunks', name: live, indices: Array(65).fill(0) }, shape],
      [{ t: 'tensorChunks', name: live, indices: [-1] }, shape],
      [{ t: 'tensorChunks', name: live, indices: [0.5] }, shape],
      [{ t: 'tensorChunks', name: live, indices: 'x' }, shape],
      [{ t: 'tensorChunks', name: live, indices: [99] }, none],
      [{ t: 'tensorChunks', name: 'no such tensor', indices: [0] }, none],
      [{ t: 'tensor' }, shape],
      [{ t: 'tensor', name: ['x'] }, shape],
      [{ t: 'tensor', name: live, indices: [0] }, shape],
      [{ t: 'tensor', name: 'no such tensor' }, none],
      [{ t: 'tensor', name: initializer!.name }, none], // in the graph, in no cut
      // a tree's questions, about a commitment to cuts
      [{ t: 'leaf', p: 0 }, "'leaf' about a commitment to cuts"],
      [{ t: 'outputs', p: 0 }, "'outputs' about"],
      [{ t: 'children', from: 0, to: n }, "'children' about"],
      [{ t: 'chunkHashes', p: 0, name: live }, "'chunkHashes' about"],
      [{ t: 'chunks', p: 0, name: live, indices: [0] }, "'chunks' about"],
      [commitFrame(t), 'one commitment per stream'],
      [{ t: 'what' }, shape],
    ]
    for (const [q, why] of bad) {
      const a = await c.ask(q)
      expect(a, JSON.stringify(q).slice(0, 80)).toMatchObject({ t: 'error', code: 'bad-request' })
      expect(a!.reason as string, JSON.stringify(q).slice(0, 80)).toMatch(new RegExp(`^${why}`))
      expect((a!.reason as string).length).toBeLessThanOrEqual(DISPUTE_LIMITS.reason)
    }
    // still serving
    expect(await c.ask({ t: 'cut', p: -1 })).toMatchObject({ t: 'cut', signed: expect.any(Uint8Array) })
    expect(await c.ask({ t: 'tensorHashes', name: live })).toMatchObject({ t: 'tensorHashes' })
    expect(await c.ask({ t: 'tensorChunks', name: live, indices: [0, 0] })).toMatchObject({
      t: 'tensorChunks',
      chunks: [expect.any(Uint8Array), expect.any(Uint8Array)],
    })
    expect(Object.keys((await c.ask({ t: 'tensor', name: 'x' }))!.tensors as object)).toEqual(['x'])
    // a question over its limit breaks the framing: one error, then the stream ends, served resolves
    expect(await c.ask({ t: 'cut', p: 0, pad: new Uint8Array(DISPUTE_LIMITS.question) })).toMatchObject({
      code: 'bad-request',
    })
    await c.served
    expect(await (await rawClient(server)).ask(commitFrame(t))).toMatchObject({ t: 'ready' })
  })

  it('answers a tree commitment no cut questions', async () => {
    const { server } = await contributor(t)
    const c = await rawClient(server)
    expect(await c.ask(commitFrame(t, {}))).toMatchObject({ t: 'commitment' })
    for (const q of [
      { t: 'cut', p: 0 },
      { t: 'tensorHashes', name: live },
      { t: 'tensorChunks', name: live, indices: [0] },
      { t: 'tensor', name: live },
    ])
      expect(await c.ask(q), q.t).toMatchObject({
        t: 'error',
        code: 'bad-request',
        reason: `'${q.t}' about a commitment without cuts`,
      })
    expect(await c.ask(commitFrame(t))).toMatchObject({ t: 'error', code: 'bad-request' })
    expect(await c.ask({ t: 'leaf', p: 0 })).toMatchObject({ t: 'leaf' })
  })

  it('answers `internal`, not `bad-request`, where its own trace lacks a cut tensor', async () => {
    const { [live]: _, ...short } = t.honest
    const { server } = await contributor(t, { lie: () => short })
    const c = await rawClient(server)
    expect(await c.ask(commitFrame(t))).toMatchObject({ t: 'ready' })
    expect(await c.ask({ t: 'cut', p: 0 })).toMatchObject({ t: 'error', code: 'internal' })
    expect(await c.ask({ t: 'tensor', name: live })).toMatchObject({ t: 'error', code: 'internal' })
    expect(await c.ask({ t: 'cut', p: -1 })).toMatchObject({ t: 'cut' })
  })

  it('holds a cut committer per requester within the trace and total caps and the ttl', async () => {
    let clock = 0
    const { server } = await contributor(t, { ttlMs: 1000, now: () => clock })
    const first = await rawClient(server, 'r1')
    expect(await first.ask(commitFrame(t))).toMatchObject({ t: 'ready' })
    const held = server.held()
    // the trace and the job's inputs, and room for their chunk hashes
    expect(held.traces).toBe(1)
    expect(held.bytes).toBeGreaterThan(tensorsByteLength(t.honest))
    expect(held.bytes).toBeLessThan(tensorsByteLength(t.honest) * 1.2 + 2000)
    const second = await rawClient(server, 'r1')
    expect(await second.ask(commitFrame(t))).toMatchObject({ t: 'ready' })
    expect(server.held()).toEqual(held) // the requester's first commitment went
    expect(await first.ask({ t: 'cut', p: 0 })).toMatchObject({ code: 'expired' })
    expect(await second.ask({ t: 'cut', p: 0 })).toMatchObject({ t: 'cut' })
    clock = 1000
    expect(await second.ask({ t: 'cut', p: 0 })).toMatchObject({ code: 'expired' })
    expect(server.held()).toEqual({ traces: 0, bytes: 0 })

    // the inputs count: a cap the trace alone fits is too small for the trace with them
    const alone = tensorsByteLength(t.honest) - tensorsByteLength(t.inputs)
    const small = await contributor(t, { maxTraceBytes: alone })
    expect(await (await rawClient(small.server)).ask(commitFrame(t))).toMatchObject({ code: 'too-large' })
    const capped = await contributor(t, { maxTotalBytes: Math.floor(held.bytes * 1.5) })
    expect(await (await rawClient(capped.server, 'x')).ask(commitFrame(t))).toMatchObject({ t: 'ready' })
    expect(await (await rawClient(capped.server, 'y')).ask(commitFrame(t))).toMatchObject({ code: 'busy' })
  })
})

/**
 * A proxy between a remote cut party and a real server that may rewrite answers: `tamper(answer)`
 * returns the frame (or raw bytes) to pass on, or null to send nothing.
 */
async function tampered(
  t: Traced,
  c: Contributor,
  tamper: (a: Frame) => Frame | Uint8Array | null,
  extra: Partial<Parameters<typeof remoteCutParty>[1]> = {},
) {
  const [client, proxyIn] = await pair()
  const [proxyOut, side] = await pair()
  void c.server.serve(side, 'requester')
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
      const out = tamper(a)
      if (out) await sendEncoded(proxyIn, out instanceof Uint8Array ? out : encodeFrame(out), { closed })
    }
  })().catch(() => {})
  return remoteCutParty(client, { ...partyOptions(t, c.id, EXACT), ...extra })
}

describe('remote cut party: malformed answers', () => {
  let t: Traced
  let live: string
  beforeAll(async () => {
    t = await tracedJob('mlp-tiny.onnx', { x: floats([1, 16], 5) })
    live = cutAt(t.cp, 0)[0]!
  })
  const on =
    (type: string, change: (a: Frame) => Frame | Uint8Array | null) =>
    (a: Frame): Frame | Uint8Array | null =>
      a.t === type ? change(a) : a
  const tensors = (a: Frame) => a.tensors as Record<string, unknown>

  it('fails each with a named transport error, never a Dispute* one', async () => {
    const c = await contributor(t)
    type Case = [
      string,
      (a: Frame) => Frame | Uint8Array | null,
      (p: RemoteCutParty) => Promise<unknown>,
      string,
    ]
    const cases: Case[] = [
      ['ready as text', on('ready', (a) => ({ ...a, leaves: '3' })), (p) => p.ready(), 'MalformedFrameError'],
      [
        'a commitment for ready',
        on('ready', () => ({ t: 'commitment' })),
        (p) => p.cut(0),
        'MalformedFrameError',
      ],
      ['a cut as text', on('cut', (a) => ({ ...a, signed: 'x' })), (p) => p.cut(0), 'MalformedFrameError'],
      ['a cut with more', on('cut', (a) => ({ ...a, more: 1 })), (p) => p.cut(0), 'MalformedFrameError'],
      [
        'a cut over MAX_CUT_BYTES',
        on('cut', (a) => ({ ...a, signed: new Uint8Array(MAX_CUT_BYTES + 1) })),
        (p) => p.cut(0),
        'MalformedFrameError',
      ],
      [
        'a cut frame over its limit',
        on('cut', (a) => ({ ...a, signed: new Uint8Array(MAX_CUT_BYTES + 64) })),
        (p) => p.cut(0),
        'FrameTooLargeError',
      ],
      [
        'another tensor',
        on('tensor', () => ({ t: 'tensor', tensors: encodeTensors({ other: t.inputs.x! }) })),
        (p) => p.tensor(live),
        'MalformedFrameError',
      ],
      [
        'two tensors',
        on('tensor', (a) => ({ ...a, tensors: { ...tensors(a), x: encodeTensors(t.inputs).x } })),
        (p) => p.tensor(live),
        'MalformedFrameError',
      ],
      [
        'no tensor',
        on('tensor', (a) => ({ ...a, tensors: {} })),
        (p) => p.tensor(live),
        'MalformedFrameError',
      ],
      [
        'a bad tensor',
        on('tensor', () => ({
          t: 'tensor',
          tensors: { [live]: { dtype: 'float32', dims: [2], data: new Uint8Array(3) } },
        })),
        (p) => p.tensor(live),
        'MalformedFrameError',
      ],
      ['a tensor over maxOutputBytes', (a) => a, (p) => p.tensor(live), 'FrameTooLargeError'],
      [
        'hashes with a bad dtype',
        on('tensorHashes', (a) => ({ ...a, hashes: { ...(a.hashes as object), dtype: 'f16' } })),
        (p) => p.chunkHashes(live),
        'MalformedFrameError',
      ],
      [
        'too many chunks',
        on('tensorChunks', (a) => ({ ...a, chunks: [...(a.chunks as []), new Uint8Array(4)] })),
        (p) => p.chunks(live, [0]),
        'MalformedFrameError',
      ],
      [
        'chunks for a cut',
        on('cut', () => ({ t: 'tensorChunks', chunks: [] })),
        (p) => p.cut(0),
        'MalformedFrameError',
      ],
      [
        'a refusal',
        on('cut', () => ({ t: 'error', code: 'busy', reason: 'later' })),
        (p) => p.cut(0),
        'PartyRefusedError',
      ],
      ['no answer', on('cut', () => null), (p) => p.cut(0), 'PartyTimeoutError'],
      [
        'garbage',
        on('tensor', () => Uint8Array.of(2, 0xff, 0xff)),
        (p) => p.tensor(live),
        'MalformedFrameError',
      ],
    ]
    for (const [what, change, question, name] of cases) {
      const small = what === 'a tensor over maxOutputBytes' ? { maxOutputBytes: 64 } : {}
      const p = await tampered(t, c, change, { timeoutMs: 200, ...small })
      const err = await question(p).catch((e: Error) => e)
      expect(err, what).toMatchObject({ name })
      expect((err as Error).name, what).not.toMatch(/^Dispute/)
    }
    // the real server's refusal carries its code
    const p = await connect(t, c, EXACT, {}, 'r2')
    await expect(p.chunks(live, [99])).rejects.toMatchObject({
      name: 'PartyRefusedError',
      code: 'bad-request',
    })
    await expect(p.tensor('no such tensor')).rejects.toMatchObject({ code: 'bad-request' })
    expect(await p.tensor(live)).toEqual(t.honest[live]) // and the stream goes on
  })

  it('bisectCuts blames a malformed cut answer on its party as transport, not a lie', async () => {
    const honest = await contributor(t)
    const trace = await t.liar(2, 0.5)
    const liar = await contributor(t, { lie: () => trace })
    const a = await connect(t, honest, EXACT, {}, 'r3')
    const b = await tampered(
      t,
      liar,
      on('cut', (x) => ({ ...x, signed: 7 })),
    )
    const err = await search(t, EXACT, a, b, [honest.id, liar.id]).catch((e: Error) => e)
    expect(err).toMatchObject({ party: 'b', name: 'MalformedFrameError' })
  })
})
