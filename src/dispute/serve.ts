/**
 * The contributor's side of `/peer-compute/dispute/2.0.0`: on `commit` it reruns the job's trace,
 * signs the root and keeps the trace (one per requester, under a byte cap, for a while) to answer
 * that requester's questions from localParty; with `cuts: true` it signs nothing yet and answers
 * from a CutCommitter (serve-cuts.ts). Nothing a peer sends throws out of `serve`: a bad
 * question gets an `error` frame, a frame that breaks the framing ends the stream after one.
 */
import type { Connection, PrivateKey, Stream } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { encodeFrame, type Frame, FrameDecoder, readFrame, sendEncoded } from '../net/frame.ts'
import { InferenceError, PartyTimeoutError } from '../shared/errors.ts'
import { DISPUTE_PROTOCOL } from '../shared/protocol.ts'
import { type NamedTensors, tensorsByteLength } from '../shared/tensor.ts'
import { tensorsCid } from '../shared/tensor-codec.ts'
import { type Committed, commitTrace, type DisputePlan, disputePlan, disputeRules } from './commit.ts'
import { createKeptTraces, type KeptTraces, keptKey } from './kept.ts'
import { createTraceCache, type TraceCache } from './onnx-graph.ts'
import { type DisputeParty, localParty } from './party.ts'
import { answerCuts, type CutsHeld, commitCuts, tensorsAnswer } from './serve-cuts.ts'
import {
  answerFrame,
  DISPUTE_LIMITS,
  errorFrame,
  isCutQuestion,
  parseQuestion,
  type Question,
  Refusal,
  signCommitment,
} from './wire-frames.ts'

export interface CommitRequest {
  requester: string
  job: CID
  model: CID
  /** CID of the inputs sent. */
  input: CID
}

export interface DisputeServerOptions {
  /** The contributor's identity: it signs commitments. */
  key: PrivateKey
  /** The model's bytes from the local store (hash-checked there), or undefined. */
  model(cid: CID): Promise<Uint8Array | undefined>
  /** Runs a model (the trace variant) on inputs; graph optimisation off is the caller's part. */
  run(model: Uint8Array, inputs: NamedTensors, signal?: AbortSignal): Promise<NamedTensors>
  /** Whether to commit for this request at all, e.g. only jobs this peer ran for that requester. */
  admit?(req: CommitRequest): boolean | Promise<boolean>
  /** Largest trace held (default 256 MiB). */
  maxTraceBytes?: number
  /** Largest answer (default DISPUTE_LIMITS.outputs); tensors over it are refused unencoded. */
  maxAnswerBytes?: number
  /** All requesters' traces together (default 512 MiB). */
  maxTotalBytes?: number
  /** How long a trace is kept after its commit (default 5 min). */
  ttlMs?: number
  /** A stream with no question for this long is closed (default 30 s). */
  idleMs?: number
  /** Traces run at once; a commit beyond gets `busy` (default 1). */
  maxCommits?: number
  /** Dispute streams one requester may hold open (default 2). */
  streamsPerPeer?: number
  /** Traced jobs' traces kept at most, in bytes (default 256 MiB; each under `maxTraceBytes`). */
  maxKeptBytes?: number
  /** The execution provider `run` computes on, for traced jobs' receipts (default 'wasm'). */
  ep?: string
  /** Test builds only: a liar's trace, as committed or kept, made to agree with its wrong result. */
  lie?: (trace: NamedTensors, graphOutputs: readonly string[]) => NamedTensors
  now?: () => number
}

/** A job a requester asked to have traced (JobBody.trace). */
export interface TraceJobRequest {
  requester: string
  model: CID
  /** CID of the inputs. */
  input: CID
}

export interface TracedRun {
  /** The model's own outputs, from the trace. */
  outputs: NamedTensors
  runMs: number
  ep: string
}

/** One requester's committed trace: a tree over leaves (party) or cuts, and its bytes. */
type HeldBody = { party: DisputeParty; bytes: number; cuts?: undefined } | (CutsHeld & { party?: undefined })
type Held = HeldBody & { expires: number }

export interface DisputeServer {
  protocol: string
  /** For libp2p's `handle`: the requester is the connection's remote peer. */
  handler(stream: Stream, connection: Connection): void
  /** Serves one stream from `requester` until it ends; never throws. */
  serve(stream: Stream, requester: string): Promise<void>
  /**
   * Runs a job as its trace (the model with every node output added, on `run`) and keeps the trace
   * for that requester, model and inputs: a dispute about it then commits without a second run.
   */
  traceJob(
    req: TraceJobRequest,
    model: Uint8Array,
    inputs: NamedTensors,
    signal?: AbortSignal,
  ): Promise<TracedRun>
  /** Traces held and their bytes (kept traces of traced jobs not included). */
  held(): { traces: number; bytes: number }
  /** Drops every trace. */
  clear(): void
}

/** The server's limits, its defaults filled in. */
interface Limits {
  trace: number
  answer: number
  total: number
  ttl: number
  idle: number
  commits: number
  streams: number
}

/** One server's state: the options, limits, traces held and the counters they are capped by. */
interface ServerState {
  o: DisputeServerOptions
  now: () => number
  limits: Limits
  traces: Map<string, Held>
  /** Dispute streams open per requester. */
  streams: Map<string, number>
  plans: Map<string, DisputePlan>
  traceModels: TraceCache
  /** Bytes of every trace held. */
  total: number
  /** Commits running now. */
  running: number
  kept: KeptTraces
}

export function serveDispute(o: DisputeServerOptions): DisputeServer {
  const s: ServerState = {
    o,
    now: o.now ?? Date.now,
    limits: {
      trace: o.maxTraceBytes ?? 256 * 1024 * 1024,
      answer: o.maxAnswerBytes ?? DISPUTE_LIMITS.outputs,
      total: o.maxTotalBytes ?? 512 * 1024 * 1024,
      ttl: o.ttlMs ?? 5 * 60_000,
      idle: o.idleMs ?? 30_000,
      commits: o.maxCommits ?? 1,
      streams: o.streamsPerPeer ?? 2,
    },
    traces: new Map(),
    streams: new Map(),
    plans: new Map(),
    traceModels: createTraceCache(2),
    total: 0,
    running: 0,
    kept: createKeptTraces({
      maxTraceBytes: o.maxTraceBytes ?? 256 * 1024 * 1024,
      maxTotalBytes: o.maxKeptBytes ?? 256 * 1024 * 1024,
      ttlMs: o.ttlMs ?? 5 * 60_000,
      ...(o.now ? { now: o.now } : {}),
    }),
  }
  return {
    protocol: DISPUTE_PROTOCOL,
    traceJob: (req, model, inputs, signal) => traceJob(s, req, model, inputs, signal),
    handler: (stream, connection) => handle(s, stream, connection),
    serve: (stream, requester) => serve(s, stream, requester),
    held: () => {
      purge(s)
      return { traces: s.traces.size, bytes: s.total }
    },
    clear: () => {
      s.traces.clear()
      s.total = 0
      s.kept.clear()
    },
  }
}

function drop(s: ServerState, requester: string) {
  const h = s.traces.get(requester)
  if (h) s.total -= h.bytes
  s.traces.delete(requester)
}

function purge(s: ServerState) {
  for (const [r, h] of s.traces) if (h.expires <= s.now()) drop(s, r)
}

function planOf(s: ServerState, cid: string, bytes: Uint8Array): DisputePlan {
  let plan = s.plans.get(cid)
  if (!plan) {
    plan = disputePlan(bytes)
    s.plans.set(cid, plan)
    if (s.plans.size > 2) s.plans.delete(s.plans.keys().next().value!)
  }
  return plan
}

/** Makes room for `requester`'s next trace of `size` bytes (its last one goes), or refuses. */
function room(s: ServerState, requester: string, size: number) {
  drop(s, requester)
  purge(s)
  if (size > s.limits.trace) throw new Refusal('too-large', `a trace of ${size} bytes`)
  if (s.total + size > s.limits.total) throw new Refusal('busy', 'too many traces held')
}

/**
 * Runs (or takes the kept trace), commits, signs and keeps the trace; the answer is the signed
 * commitment. In cuts mode a cut committer is kept instead, and the answer is `ready`.
 */
async function commit(s: ServerState, requester: string, q: Question & { t: 'commit' }): Promise<Frame> {
  const { o, limits } = s
  if (s.running >= limits.commits) throw new Refusal('busy', 'a trace is already running')
  s.running++
  try {
    const input = await tensorsCid(q.inputs)
    const req = { requester, job: q.job, model: q.model, input }
    if (o.admit && !(await o.admit(req))) throw new Refusal('refused', 'no such job for this requester')
    const bytes = await o.model(q.model)
    if (!bytes) throw new Refusal('unknown-model', `no model ${q.model}`)
    const plan = planOf(s, q.model.toString(), bytes)
    const kept = s.kept.take(keptKey(requester, q.model.toString(), input.toString()))
    const ran: NamedTensors = kept ?? lied(s, plan, await o.run(await traceOf(s, q.model, plan), q.inputs))
    // Cut -1 is the job's inputs: a cuts-mode trace holds them.
    const trace = q.cuts ? { ...q.inputs, ...ran } : ran
    // Refused before the trace is hashed, where its size alone is over the cap.
    if (tensorsByteLength(trace) > limits.trace) throw new Refusal('too-large', 'the trace is over the cap')
    if (q.cuts) {
      const { held, answer } = commitCuts(q, { trace, plan, key: o.key, input })
      room(s, requester, held.bytes)
      hold(s, requester, held)
      return answer
    }
    const committed: Committed = await commitTrace(plan, disputeRules(q.compare), trace)
    const hashes = Object.values(committed.chunks).reduce((n, c) => n + c.exact.length * 3 * 32, 0)
    const size = tensorsByteLength(trace) + hashes
    room(s, requester, size)
    const c = committed.commitment
    const signed = await signCommitment({ ...req, root: c.root, leaves: c.leaves }, o.key)
    hold(s, requester, { party: localParty(plan, committed, trace), bytes: size })
    return answerFrame('commit', { signed, coarse: c.coarse, exact: c.exact })
  } finally {
    s.running--
  }
}

/** Keeps `requester`'s commitment (room was made for it) until the ttl. */
function hold(s: ServerState, requester: string, h: HeldBody) {
  s.traces.set(requester, { ...h, expires: s.now() + s.limits.ttl })
  s.total += h.bytes
}

async function traceJob(
  s: ServerState,
  req: TraceJobRequest,
  model: Uint8Array,
  inputs: NamedTensors,
  signal?: AbortSignal,
): Promise<TracedRun> {
  const cid = req.model.toString()
  const plan = planOf(s, cid, model)
  const traceModel = await s.traceModels.get(cid, plan.model)
  const t0 = performance.now()
  const trace = await s.o.run(traceModel.bytes, inputs, signal)
  const runMs = performance.now() - t0
  const outputs: NamedTensors = {}
  for (const name of plan.model.outputs) {
    const t = trace[name]
    if (!t) throw new InferenceError(`the trace has no output '${name}'`)
    outputs[name] = t
  }
  s.kept.put(keptKey(req.requester, cid, req.input.toString()), lied(s, plan, trace))
  return { outputs, runMs, ep: s.o.ep ?? 'wasm' }
}

const traceOf = async (s: ServerState, model: CID, plan: DisputePlan) =>
  (await s.traceModels.get(model.toString(), plan.model)).bytes

const lied = (s: ServerState, plan: DisputePlan, trace: NamedTensors) =>
  s.o.lie ? s.o.lie(trace, plan.model.outputs) : trace

/** The answer to a question about the trace `held`, still current for `requester`. */
async function answer(
  s: ServerState,
  requester: string,
  held: Held | undefined,
  q: Question,
): Promise<Frame> {
  if (!held) throw new Refusal('no-commitment', `'${q.t}' before a commitment`)
  if (s.traces.get(requester) !== held || held.expires <= s.now())
    throw new Refusal('expired', 'the committed trace is no longer held')
  if (held.cuts) {
    if (!isCutQuestion(q)) throw new Refusal('bad-request', `'${q.t}' about a commitment to cuts`)
    return answerCuts(held.cuts, q, s.limits.answer)
  }
  const party = held.party
  switch (q.t) {
    case 'children':
      return answerFrame(q.t, await party.children(q.from, q.to))
    case 'leaf':
      return answerFrame(q.t, await party.leaf(q.p))
    case 'outputs':
      return tensorsAnswer(q.t, await party.outputs(q.p), s.limits.answer)
    case 'chunkHashes':
      return answerFrame(q.t, await party.chunkHashes(q.p, q.name))
    case 'chunks':
      return answerFrame(q.t, await party.chunks(q.p, q.name, q.indices))
    default: // a commit never comes here: serve() answers it
      throw new Refusal('bad-request', `'${q.t}' about a commitment without cuts`)
  }
}

async function send(s: ServerState, stream: Stream, f: Frame) {
  let bytes: Uint8Array
  try {
    bytes = encodeFrame(f, f.t === 'error' ? DISPUTE_LIMITS.error : s.limits.answer)
  } catch {
    bytes = encodeFrame(errorFrame(new Refusal('too-large', `the '${f.t}' answer is too large`)))
  }
  const closed = (cause?: Error) => cause ?? new Error('the dispute stream closed')
  await sendEncoded(stream, bytes, { signal: AbortSignal.timeout(s.limits.idle), closed })
}

/** The next frame, null at the end; past the idle limit the stream is aborted. */
async function next(s: ServerState, stream: Stream, decoder: FrameDecoder): Promise<Frame | null> {
  const idleMs = s.limits.idle
  let timer: ReturnType<typeof setTimeout> | undefined
  const idle = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new PartyTimeoutError(`no question within ${idleMs} ms`)), idleMs)
  })
  try {
    return await Promise.race([readFrame(stream, decoder), idle])
  } finally {
    clearTimeout(timer)
  }
}

async function serve(s: ServerState, stream: Stream, requester: string): Promise<void> {
  // The commit (the job's inputs) is read under its own limit; questions under a small one.
  let decoder = new FrameDecoder(DISPUTE_LIMITS.commit)
  let held: Held | undefined
  try {
    for (;;) {
      let f: Frame | null
      try {
        f = await next(s, stream, decoder)
      } catch (err) {
        // framing is lost (or the peer went quiet): say why once, then end the stream
        if ((err as Error).name !== 'PartyTimeoutError') await send(s, stream, errorFrame(err as Error))
        throw err
      }
      if (!f) break
      let reply: Frame
      let last = false
      try {
        const q = parseQuestion(f)
        if (q.t === 'commit' && held) throw new Refusal('bad-request', 'one commitment per stream')
        reply = q.t === 'commit' ? await commit(s, requester, q) : await answer(s, requester, held, q)
        if (q.t === 'commit') {
          held = s.traces.get(requester)
          // questions are read under a smaller limit: none may be on its way under the commit's
          last = !decoder.idle || decoder.queue.length > 0
          if (last) throw new Refusal('bad-request', 'a question came before the commitment was answered')
          decoder = new FrameDecoder(DISPUTE_LIMITS.question)
        }
      } catch (err) {
        reply = errorFrame(err as Error)
      }
      await send(s, stream, reply)
      if (last) break
    }
    await stream.close({ signal: AbortSignal.timeout(5000) })
  } catch (err) {
    stream.abort(err as Error)
  }
}

/** libp2p's handler: serves the stream unless its requester holds too many already. */
function handle(s: ServerState, stream: Stream, connection: Connection) {
  const requester = connection.remotePeer.toString()
  const open = s.streams.get(requester) ?? 0
  if (open >= s.limits.streams) {
    void send(s, stream, errorFrame(new Refusal('busy', 'too many dispute streams')))
      .then(() => stream.close({ signal: AbortSignal.timeout(5000) }))
      .catch((err) => stream.abort(err))
    return
  }
  s.streams.set(requester, open + 1)
  void serve(s, stream, requester).finally(() => {
    const left = (s.streams.get(requester) ?? 1) - 1
    if (left) s.streams.set(requester, left)
    else s.streams.delete(requester)
  })
}
