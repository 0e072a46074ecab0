/**
 * Jobs waiting for a free contributor slot, woken in the order they began to wait. A trigger wakes
 * as many as there are free slots (at least one); a woken job that waits again (it could use none of
 * them) passes its turn to the next in line. Every `tickMs` all of them wake, so each re-checks its
 * deadline and signal. A queue of thousands of jobs thus costs a few wake-ups per freed slot, not one
 * per queued job: with every job woken at every change, a batch cost O(n²).
 */
export interface CapacityWaiters {
  /** Resolves when this job's turn comes at a trigger, or at the next tick; at once if `signal` is aborted. */
  wait(signal: AbortSignal): Promise<void>
  readonly waiting: number
  stop(): void
}

export interface CapacityOptions {
  /** Slots free now across the swarm (for any job); default: unknown, so a trigger wakes everyone. */
  free?(): number
  tickMs?: number
}

interface Waiter {
  signal: AbortSignal
  resolve(): void
}

export function createCapacityWaiters(
  triggers: [EventTarget, string][],
  o: CapacityOptions = {},
): CapacityWaiters {
  const tickMs = o.tickMs ?? 1000
  const free = o.free ?? (() => Number.POSITIVE_INFINITY)
  let queue: Waiter[] = []
  let woken = new WeakSet<AbortSignal>() // jobs woken since the last trigger or tick
  let ticker: ReturnType<typeof setInterval> | undefined

  const release = (take: Waiter[]) => {
    for (const w of take) {
      woken.add(w.signal)
      w.resolve()
    }
    if (queue.length === 0) {
      clearInterval(ticker)
      ticker = undefined
    }
  }
  const round = (n: number) => {
    woken = new WeakSet()
    release(queue.splice(0, n))
  }
  const onTrigger = () => round(Math.max(1, free()))
  for (const [target, type] of triggers) target.addEventListener(type, onTrigger)

  return {
    wait(signal) {
      if (signal.aborted) return Promise.resolve()
      return new Promise<void>((resolve) => {
        queue.push({ signal, resolve })
        ticker ??= setInterval(() => round(queue.length), tickMs)
        // Woken this round, it found nothing it could use: the next one not yet woken gets its turn.
        if (!woken.has(signal) || free() <= 0) return
        const next = queue.findIndex((w) => !woken.has(w.signal))
        if (next >= 0) release(queue.splice(next, 1))
      })
    },
    get waiting() {
      return queue.length
    },
    stop() {
      for (const [target, type] of triggers) target.removeEventListener(type, onTrigger)
      const all = queue
      queue = []
      release(all)
    },
  }
}
