/**
 * Disputes over cuts on the wire, untrusted bytes (src/dispute/wire-cuts.ts, serve-cuts.ts): every
 * malformed cut question gets a typed `error` frame and the server goes on; a commitment's mode fixes
 * the questions it answers; what it holds is capped, and a tensor answer over its limit is refused
 * before it is encoded; malformed, oversized, refused or late answers fail with named transport
 * errors (never `Dispute*`).
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { leafNode } from '../../src/dispute/commit.ts'
import { MAX_CUT_BYTES } from '../../src/dispute/cut-commit.ts'
import { cutAt } from '../../src/dispute/cuts.ts'
import type { DisputeServer } from '../../src/dispute/serve.ts'
import { type RemoteCutParty, remoteCutParty } from '../../src/dispute/wire-cuts.ts'
import { DISPUTE_LIMITS } from '../../src/dispute/wire-frames.ts'
import { encodeFrame, type Frame, FrameDecoder, readFrame, sendEncoded } from '../../src/net/frame.ts'
import { type Tensor, tensorsByteLength } from '../../src/shared/tensor.ts'
import { encodeTensors } from '../../src/shared/tensor-codec.ts'
import { tracedJob } from '../helpers/cut-trace.ts'
import { floats } from '../helpers/ort-run.ts'
import {
  type Contributor,
  closeStreams,
  connect,
  contributor,
  EXACT,
  pair,
  partyOptions,
  search,
  type Traced,
} from '../helpers/wire-cuts.ts'

afterEach(closeStreams)

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

  it('refuses a tensor over its answer limit before it encodes it, over cuts and over a tree', async () => {
    // The live tensor made 32 KiB, over an 8 KiB limit: its dtype is read to encode it, and by
    // nothing else once the commit is answered.
    let encoded = 0
    const big = floats([1, 8192], 1)
    const counted = Object.defineProperty({ dims: big.dims, data: big.data } as Tensor, 'dtype', {
      enumerable: true,
      get: () => {
        encoded++
        return big.dtype
      },
    })
    const lie = (trace: Record<string, Tensor>) => ({ ...trace, [live]: counted })
    const { server } = await contributor(t, { lie, maxAnswerBytes: 8 * 1024 })
    const cuts = await rawClient(server, 'cuts')
    expect(await cuts.ask(commitFrame(t))).toMatchObject({ t: 'ready' })
    encoded = 0
    const tooLarge = { t: 'error', code: 'too-large' }
    expect(await cuts.ask({ t: 'tensor', name: live })).toMatchObject(tooLarge)
    expect(encoded).toBe(0)
    expect(await cuts.ask({ t: 'tensor', name: 'x' })).toMatchObject({ t: 'tensor' })
    const tree = await rawClient(server, 'tree')
    expect(await tree.ask(commitFrame(t, {}))).toMatchObject({ t: 'commitment' })
    encoded = 0
    expect(leafNode(t.plan, 0).outputs).toContain(live)
    expect(await tree.ask({ t: 'outputs', p: 0 })).toMatchObject(tooLarge)
    expect(encoded).toBe(0)
    expect(await tree.ask({ t: 'outputs', p: 1 })).toMatchObject({ t: 'outputs' })
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
