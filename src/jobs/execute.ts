/** Runs a checked job in the local engine and signs its receipt: shared by the stream handler and self-replicas. */
import type { PrivateKey } from '@libp2p/interface'
import type { InferenceEngine } from '../compute/bridge.ts'
import type { DisputeServer } from '../dispute/serve.ts'
import type { ModelSource } from '../models/store.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { tensorsCid } from '../shared/tensor-codec.ts'
import { msToUs, type Receipt, signReceipt } from '../trust/receipt.ts'
import type { CheckedJobRequest, ReadJobRequest } from './messages.ts'

export interface ExecutorOptions {
  privateKey: PrivateKey
  selfId: string
  engine: InferenceEngine
  models: ModelSource
  /** Adapter class recorded in receipts. */
  adapter: () => string
  /** Runs jobs whose requester asked for a trace (JobBody.trace); without it they run plain. */
  tracer?: Pick<DisputeServer, 'traceJob'>
}

export interface Executed {
  outputs: NamedTensors
  receipt: Receipt
  ep: string
  runMs: number
}

export function createExecutor(opts: ExecutorOptions) {
  /**
   * `onComputed` fires when the engine is done, before signing: callers free their slot there. A
   * job still being checked runs meanwhile (its model must be loaded already), and its receipt is
   * signed only once the checks hold: a failed check rejects, and nothing is signed.
   */
  return async function execute(
    job: CheckedJobRequest | ReadJobRequest,
    requester: string,
    signal: AbortSignal,
    onComputed?: () => void,
  ): Promise<Executed> {
    const model = job.body.model.toString()
    const queuedAt = performance.now()
    const checked = 'checked' in job ? job.checked : Promise.resolve(job)
    // The engine's residency is the one record of loaded models (src/compute/residency.ts). The
    // contributor's guarded view reports none over its size limit, so those go through loadModel and
    // are refused there; an engine without `resident` loads every time.
    // A traced job runs on the dispute runner, never in this engine: nothing to load here.
    const isTraced = job.body.trace === true && opts.tracer !== undefined
    if (!isTraced && !opts.engine.resident?.(model)) {
      await checked // no model is fetched for an unchecked job
      await opts.engine.loadModel(model, await opts.models.get(model, { signal, peers: [requester] }), signal)
    }
    const run = isTraced
      ? await traced(opts, job, requester, signal)
      : await opts.engine.run({ cid: model, inputs: job.inputs }, signal)
    const ranAt = performance.now()
    onComputed?.()
    const req = await checked
    const receipt = await signReceipt(
      {
        v: 1,
        job: req.jobCid,
        model: req.body.model,
        input: req.body.input,
        output: await tensorsCid(run.outputs),
        worker: opts.selfId,
        requester,
        ep: run.ep,
        adapter: opts.adapter(),
        timing: {
          queueUs: msToUs(Math.max(0, ranAt - queuedAt - run.timing.runMs)),
          runUs: msToUs(run.timing.runMs),
        },
        ts: Date.now(),
      },
      opts.privateKey,
    )
    return { outputs: run.outputs, receipt, ep: run.ep, runMs: run.timing.runMs }
  }
}

/**
 * The job as its trace, kept for a dispute (src/dispute/kept.ts). Checked first: the model is read
 * and the trace run only for a request whose signature asked for it. `signal` (a hand-back, a
 * closed stream) stops the run as it stops a plain one.
 */
async function traced(
  opts: ExecutorOptions,
  job: CheckedJobRequest | ReadJobRequest,
  requester: string,
  signal: AbortSignal,
) {
  const { body, inputs } = 'checked' in job ? await job.checked : job
  const model = await opts.models.get(body.model.toString(), { signal, peers: [requester] })
  const req = { requester, model: body.model, input: body.input }
  const run = await opts.tracer!.traceJob(req, model, inputs, signal)
  return { outputs: run.outputs, ep: run.ep, timing: { runMs: run.runMs } }
}

export type Execute = ReturnType<typeof createExecutor>
