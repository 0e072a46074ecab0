/**
 * The narrow job interface task pipelines run on, and map-reduce over parts of a task:
 *   const submit: Submit = (model, inputs, opts) => peer.submit(model, inputs, opts)
 *   const outs = await mapParts(items, (x, i, signal) => submit('m', toInputs(x), { signal }), { stage: 'rec' })
 */
import { AbortError } from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'

/** What a pipeline needs back from a job; `peer.submit`'s outcome has these fields and more. */
export interface SubmitResult {
  outputs: NamedTensors
  worker?: string
  runMs?: number
}
/** Runs `model` (catalog name or CID) on some peer: `peer.submit`, a quorum submit, or a local stub. */
export type Submit = (
  model: string,
  inputs: NamedTensors,
  opts?: { signal?: AbortSignal },
) => Promise<SubmitResult>

export type PartState = 'queued' | 'running' | 'done' | 'failed'
export interface PartEvent {
  stage: string
  index: number
  total: number
  state: PartState
  worker?: string
  ms?: number
  error?: string
}
export type OnPart = (e: PartEvent) => void

export interface MapOptions {
  stage: string
  /** Parts in flight at once; the rest wait here, not at a peer (default 4). */
  concurrency?: number
  onPart?: OnPart
  signal?: AbortSignal
}

/** Runs `fn` on every item with bounded concurrency; results keep the items' order. Fails fast. */
export async function mapParts<T, R>(
  items: readonly T[],
  fn: (item: T, index: number, signal: AbortSignal) => Promise<R & { worker?: string }>,
  o: MapOptions,
): Promise<R[]> {
  const total = items.length
  const failed = new AbortController()
  const signal = o.signal ? AbortSignal.any([o.signal, failed.signal]) : failed.signal
  const results: R[] = new Array(total)
  for (let i = 0; i < total; i++) o.onPart?.({ stage: o.stage, index: i, total, state: 'queued' })
  let next = 0
  const lane = async () => {
    while (next < total) {
      if (signal.aborted) throw signal.reason ?? new AbortError(`${o.stage} cancelled`)
      const index = next++
      o.onPart?.({ stage: o.stage, index, total, state: 'running' })
      const t0 = performance.now()
      try {
        const r = await fn(items[index]!, index, signal)
        results[index] = r
        const ms = performance.now() - t0
        o.onPart?.({
          stage: o.stage,
          index,
          total,
          state: 'done',
          ms,
          ...(r.worker ? { worker: r.worker } : {}),
        })
      } catch (err) {
        o.onPart?.({ stage: o.stage, index, total, state: 'failed', error: (err as Error).message })
        failed.abort(err)
        throw err
      }
    }
  }
  const lanes = Math.max(1, Math.min(o.concurrency ?? 4, total))
  await Promise.all(Array.from({ length: lanes }, lane))
  return results
}
