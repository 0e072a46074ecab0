/**
 * Sends one replica of a job: to a contributor over its direct link (with the retry and redial
 * rules for links that fail before the job was handed over), or to this peer's own worker.
 */
import type { Connection, PrivateKey } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import { AbortError, NoPeerAvailableError } from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { tensorsCid } from '../shared/tensor-codec.ts'
import { type JobBody, jobCid, newNonce, signJob } from '../trust/job-sig.ts'
import { verifyReceipt } from '../trust/receipt.ts'
import { sendJob } from './client.ts'
import type { Execute } from './execute.ts'
import { isAnswered } from './failure.ts'
import type { DispatchResult } from './quorum.ts'
import type { Scheduler } from './scheduler.ts'
import { createStreamPool } from './stream-pool.ts'

/** The narrow view of the network a dispatcher needs. */
export interface Links {
  /** The direct (ICE-connected) link to `peer`, if any. */
  direct(peer: string): Connection | undefined
  /** Replaces the link to `peer`: closes it and dials its advertised addresses. */
  redial(peer: string, signal: AbortSignal): Promise<void>
}

export interface DispatcherOptions {
  links: Links
  privateKey: PrivateKey
  selfId: string
  /** Counts our jobs per peer, and which of them delivered. */
  scheduler: Pick<Scheduler, 'begin'>
  /** Runs a replica in this peer's own worker (policy.allowSelf). */
  execute: Execute
  /** First retry of a job never sent, doubled each time. */
  retryMs?: number
}

export interface Dispatcher {
  send(
    model: string,
    inputs: NamedTensors,
    inputCid: Promise<CID>,
    peer: string,
    timeoutMs: number,
    signal: AbortSignal,
    /**
     * `trace`: ask for a traced job (JobBody.trace); our own worker runs it plain. `pinned`: the
     * caller named this peer, so a lost link to it is dialled again rather than the job failed.
     */
    opts?: { trace?: boolean; pinned?: boolean },
  ): Promise<DispatchResult>
  /** Closes idle job streams (at stop). */
  close(): void
}

/** A job never sent is tried this many more times; any other transport failure once more. */
const NOT_SENT_TRIES = 3

/** What sending a replica needs: the dispatcher's options, its job streams and retry base. */
interface Ctx {
  o: DispatcherOptions
  streams: ReturnType<typeof createStreamPool>
  retryMs: number
}

export function createDispatcher(o: DispatcherOptions): Dispatcher {
  const ctx: Ctx = { o, streams: createStreamPool(), retryMs: o.retryMs ?? 250 }
  return {
    async send(model, inputs, inputCid, peer, timeoutMs, signal, opts = {}) {
      if (peer === o.selfId) return local(o, model, inputs, await inputCid, signal)
      const job = { model, inputs, inputCid, trace: opts.trace ?? false, pinned: opts.pinned ?? false }
      return remote(ctx, job, peer, timeoutMs, signal)
    },
    close: () => ctx.streams.clear(),
  }
}

async function remote(
  ctx: Ctx,
  job: { model: string; inputs: NamedTensors; inputCid: Promise<CID>; trace: boolean; pinned: boolean },
  peer: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<DispatchResult> {
  const { o, streams } = ctx
  // A peer the caller named is the only one there will be: a link lost since is dialled again
  // first. One the quorum picked fails at once and the quorum picks another.
  if (job.pinned && o.links.direct(peer) == null) await o.links.redial(peer, signal).catch(() => {})
  if (signal.aborted) throw new AbortError('the job was cancelled while its link was dialled again')
  const connection = o.links.direct(peer)
  if (connection == null) throw new NoPeerAvailableError(`no direct WebRTC connection to ${peer}`)
  const done = o.scheduler.begin(peer) // counted at once: concurrent picks must see it
  let held = true
  let delivered = false
  const input = await job.inputCid
  const send = async (c: Connection) => {
    const r = await sendJob({
      connection: c,
      privateKey: o.privateKey,
      selfId: o.selfId,
      model: job.model,
      inputs: job.inputs,
      inputCid: input,
      streams,
      timeoutMs,
      signal,
      ...(job.trace ? { trace: true } : {}),
    })
    delivered = true
    return r
  }
  try {
    return await send(connection)
  } catch (err) {
    if ((err as { code?: string }).code === 'busy') held = false
    // Two tabs that dialled each other at once keep one connection and close the other: a job
    // caught on the closed one goes again on the survivor. Only transport failures qualify: a
    // peer's answer (reject, bad receipt, timeout) stands.
    if (signal.aborted || isAnswered(err as Error)) throw err
    return await retry(ctx, { peer, pinned: job.pinned }, connection, err, send, signal)
  } finally {
    done(held, delivered)
  }
}

/** Sends again on the surviving link after the transport failure `err`; throws the last failure. */
async function retry(
  ctx: Ctx,
  { peer, pinned }: { peer: string; pinned: boolean },
  connection: Connection,
  err: unknown,
  send: (c: Connection) => Promise<DispatchResult>,
  signal: AbortSignal,
): Promise<DispatchResult> {
  const { links } = ctx.o
  let last = err
  const tries = (err as Error).name === 'JobNotSentError' ? NOT_SENT_TRIES : 1
  for (let i = 0; i < tries; i++) {
    await new Promise((r) => setTimeout(r, ctx.retryMs * 2 ** i))
    // The same link failed to open a stream twice, or the named peer's link is gone (closed
    // mid-batch, as a link ICE reported disconnected is): have discovery dial it again now.
    const now = links.direct(peer)
    if ((pinned && now == null) || (i > 0 && now === connection))
      await links.redial(peer, signal).catch(() => {})
    if (signal.aborted) throw last
    // The surviving link may still be connecting its ICE (not yet direct): the next try waits longer.
    const survivor = links.direct(peer)
    if (survivor == null || survivor.status !== 'open') continue
    try {
      return await send(survivor)
    } catch (again) {
      if ((again as Error).name !== 'JobNotSentError') throw again
      last = again
    }
  }
  throw last
}

/** A replica in this peer's own worker (policy.allowSelf). */
async function local(
  o: DispatcherOptions,
  model: string,
  inputs: NamedTensors,
  input: CID,
  signal: AbortSignal,
): Promise<DispatchResult> {
  const started = performance.now()
  const body: JobBody = {
    v: 1,
    model: CID.parse(model),
    input,
    requester: o.selfId,
    deadline: Date.now() + 60_000,
    nonce: newNonce(),
  }
  const cid = await jobCid(body)
  await signJob(body, o.privateKey)
  const r = await o.execute({ body, inputs, jobCid: cid }, o.selfId, signal)
  await verifyReceipt(r.receipt, { job: cid, output: await tensorsCid(r.outputs) })
  return {
    job: cid.toString(),
    worker: o.selfId,
    outputs: r.outputs,
    receipt: r.receipt,
    roundTripMs: performance.now() - started,
  }
}
