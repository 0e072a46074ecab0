/** Submits jobs: picks a contributor, retries elsewhere on retriable failures, records history. */
import type { Logger, PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { type BrowserNode, directConnection } from '../net/node.ts'
import { NoPeerAvailableError } from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import type { JobRecord, Store } from '../store/db.ts'
import { encodeReceipt } from '../trust/receipt.ts'
import { type JobResult, sendJob } from './client.ts'
import type { Scheduler } from './scheduler.ts'

export interface SubmitOptions {
  /** Run on this PeerId only, with no retry elsewhere. */
  peer?: string
  timeoutMs?: number
  maxAttempts?: number
  /** How long to wait for a free contributor before giving up (default: timeoutMs). */
  waitForPeerMs?: number
  signal?: AbortSignal
  label?: string
}

export interface JobOutcome extends JobResult {
  ep: string
  runMs: number
  attempts: number
}

/** Deterministic refusals: another peer would refuse the same job the same way. */
const FINAL_CODES = new Set(['bad-request', 'too-large', 'bad-signature', 'unknown-model'])

export interface RequesterOptions {
  node: BrowserNode
  privateKey: PrivateKey
  selfId: string
  scheduler: Scheduler
  store: Store
  log: Logger
  /** Resolves when the peer set changes (or after a short poll). */
  peersChanged(signal: AbortSignal): Promise<void>
  onChange(): void
}

export function createRequester(o: RequesterOptions) {
  async function waitForPeer(model: string, exclude: Set<string>, until: number, signal?: AbortSignal) {
    for (;;) {
      const p = o.scheduler.pick(model, exclude)
      if (p) return p
      const left = until - Date.now()
      if (left <= 0 || signal?.aborted) return undefined
      await o.peersChanged(
        AbortSignal.any([AbortSignal.timeout(Math.min(left, 500)), ...(signal ? [signal] : [])]),
      )
    }
  }

  async function attempt(
    peer: string,
    model: string,
    inputs: NamedTensors,
    opts: SubmitOptions,
  ): Promise<JobResult> {
    const connection = directConnection(o.node, peerIdFromString(peer))
    if (connection == null) throw new NoPeerAvailableError(`no direct WebRTC connection to ${peer}`)
    const done = o.scheduler.begin(peer)
    try {
      return await sendJob({
        connection,
        privateKey: o.privateKey,
        selfId: o.selfId,
        model,
        inputs,
        timeoutMs: opts.timeoutMs ?? 30_000,
        ...(opts.signal ? { signal: opts.signal } : {}),
      })
    } finally {
      done()
    }
  }

  async function submit(model: string, modelName: string, inputs: NamedTensors, opts: SubmitOptions = {}) {
    const rec: JobRecord = {
      id: `local-${crypto.randomUUID()}`,
      model,
      modelName,
      status: 'running',
      submittedAt: Date.now(),
      verified: false,
    }
    await o.store.putJob(rec)
    o.onChange()
    const exclude = new Set<string>()
    const maxAttempts = opts.peer ? 1 : (opts.maxAttempts ?? 3)
    const until = Date.now() + (opts.waitForPeerMs ?? opts.timeoutMs ?? 30_000)
    let lastErr: Error = new NoPeerAvailableError('no contributor with a free slot and a direct connection')
    for (let n = 1; n <= maxAttempts; n++) {
      const peer = opts.peer ?? (await waitForPeer(model, exclude, until, opts.signal))?.id
      if (peer == null) break
      try {
        const r = await attempt(peer, model, inputs, opts)
        const b = r.receipt.body
        const outcome: JobOutcome = { ...r, ep: b.ep, runMs: b.timing.runUs / 1000, attempts: n }
        Object.assign(rec, {
          status: 'done',
          finishedAt: Date.now(),
          worker: r.worker,
          ep: b.ep,
          roundTripMs: r.roundTripMs,
          runMs: outcome.runMs,
          verified: true,
          receipt: encodeReceipt(r.receipt),
          outputCid: b.output.toString(),
          jobCid: r.job,
        })
        await o.store.putJob(rec)
        o.onChange()
        return outcome
      } catch (err) {
        lastErr = err as Error
        o.log('attempt %d on %s failed: %s', n, peer, lastErr.message)
        const code = (err as { code?: string }).code
        if (opts.signal?.aborted || (code && FINAL_CODES.has(code))) break
        // A busy peer is healthy: wait for capacity rather than spend an attempt or exclude it.
        if (code === 'busy' && !opts.peer && Date.now() < until) {
          n--
          await o.peersChanged(AbortSignal.timeout(200))
        } else exclude.add(peer)
      }
    }
    Object.assign(rec, {
      status: 'failed',
      finishedAt: Date.now(),
      error: { name: lastErr.name, message: lastErr.message },
    })
    await o.store.putJob(rec)
    o.onChange()
    throw lastErr
  }

  return { submit }
}
