/**
 * Bounded concurrency for task commands that run many files over one swarm:
 *   const limit = createLimit(concurrency)       // one shared cap on jobs in flight
 *   await orderedRuns(files, runFile, { concurrency: 4, onResult: print })
 */
import PQueue from 'p-queue'
import { AbortError } from '../src/shared/errors.ts'

/** Runs `fn` once fewer than `n` others hold a slot, first come first served; an aborted waiter leaves the queue. */
export type Limit = <T>(fn: () => Promise<T>, signal?: AbortSignal) => Promise<T>

export function createLimit(n: number): Limit {
  const queue = new PQueue({ concurrency: Math.max(1, n) })
  return (fn, signal) => queue.add(fn, signal ? { signal } : {})
}

export interface OrderedRunsOptions<T, R> {
  /** Items running at once. */
  concurrency: number
  /** Each item's share of `capacity` (default 1); one heavier than `capacity` runs alone. */
  weight?: (item: T, index: number) => number
  capacity?: number
  /** Each result in the items' order, once it and every item before it are done. */
  onResult?: (result: R, index: number) => void
}

/**
 * `fn` over items, started in order as they fit. What a one-at-a-time loop would do, overlapped: on a
 * failure the later items are aborted, the earlier ones finish, and the earliest item's error is thrown.
 */
export async function orderedRuns<T, R>(
  items: readonly T[],
  fn: (item: T, index: number, signal: AbortSignal) => Promise<R>,
  o: OrderedRunsOptions<T, R>,
): Promise<R[]> {
  const weight = (i: number) => o.weight?.(items[i]!, i) ?? 1
  const capacity = o.capacity ?? Number.POSITIVE_INFINITY
  const aborts = items.map(() => new AbortController())
  const results: R[] = []
  const done = new Set<number>()
  const running = new Map<number, Promise<void>>()
  let failedAt = items.length
  let error: unknown
  let next = 0
  let used = 0
  let emitted = 0

  const start = (i: number) => {
    const w = weight(i)
    used += w
    const run = fn(items[i]!, i, aborts[i]!.signal).then(
      (r) => {
        results[i] = r
      },
      (err) => {
        if (i >= failedAt) return // aborted after an earlier failure, or failed after it: not reported
        failedAt = i
        error = err
        for (const a of aborts.slice(i + 1)) a.abort(new AbortError(`stopped: item ${i + 1} failed`))
      },
    )
    running.set(
      i,
      run.finally(() => {
        used -= w
        running.delete(i)
        done.add(i)
      }),
    )
  }

  try {
    for (;;) {
      while (
        next < failedAt &&
        running.size < Math.max(1, o.concurrency) &&
        (running.size === 0 || used + weight(next) <= capacity)
      )
        start(next++)
      if (running.size === 0) break
      await Promise.race(running.values())
      for (; emitted < failedAt && done.has(emitted); emitted++) o.onResult?.(results[emitted]!, emitted)
    }
  } finally {
    for (const a of aborts) a.abort(new AbortError('stopped'))
  }
  if (failedAt < items.length) throw error
  return results
}
