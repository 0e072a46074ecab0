/**
 * Jobs waiting for a free contributor slot, woken about in the order they began to wait. A trigger
 * wakes as many as there are free slots (at least one); a woken job that waits again (it could use
 * none of them) passes its turn to the next in line and goes to the back. Every `tickMs` all of them
 * wake, so each re-checks its deadline. A queue of thousands of jobs thus costs a few wake-ups per
 * freed slot, not one per queued job: with every job woken at every change, a batch cost O(n²).
 */
import type { Service } from '../shared/lifecycle.ts'

export interface CapacityWaiters extends Service {
  /**
   * Resolves when this job's turn comes at a trigger, at the next tick, or when `signal` aborts. A job
   * passes one signal of its own, and waits once at a time: the signal is how its turn is known.
   */
  wait(signal: AbortSignal): Promise<void>
  readonly waiting: number
  /** Wakes every waiter; later waits resolve at once. */
  stop(): void
}

export interface CapacityOptions {
  /** Slots free now that some job could use; default: unknown, so a trigger wakes everyone. */
  free?(): number
  tickMs?: number
}

interface Waiter {
  signal: AbortSignal
  resolve(): void
  onAbort(): void
}

export function createCapacityWaiters(
  triggers: [EventTarget, string][],
  o: CapacityOptions = {},
): CapacityWaiters {
  const tickMs = o.tickMs ?? 1000
  const free = o.free ?? (() => Number.POSITIVE_INFINITY)
  let queue: Waiter[] = []
  let woken = new WeakSet<AbortSignal>() // jobs woken since the last trigger or tick
  let unwoken = 0 // queued jobs not woken this round: those a passed-on turn can go to
  let ticker: ReturnType<typeof setInterval> | undefined
  let stopped = false

  const release = (take: Waiter[]) => {
    for (const w of take) {
      if (!woken.has(w.signal)) unwoken--
      woken.add(w.signal)
      w.signal.removeEventListener('abort', w.onAbort)
      w.resolve()
    }
    if (queue.length === 0) {
      clearInterval(ticker)
      ticker = undefined
    }
  }
  const round = (n: number) => {
    woken = new WeakSet()
    unwoken = queue.length
    release(queue.splice(0, n))
  }
  const onTrigger = () => round(Math.max(1, free()))
  for (const [target, type] of triggers) target.addEventListener(type, onTrigger)

  return {
    wait(signal) {
      if (signal.aborted || stopped) return Promise.resolve()
      return new Promise<void>((resolve) => {
        // A job that gives up while queued leaves at once: its place must not take a freed slot's turn.
        const onAbort = () => {
          const i = queue.indexOf(w)
          if (i >= 0) release(queue.splice(i, 1))
        }
        const w: Waiter = { signal, resolve, onAbort }
        signal.addEventListener('abort', onAbort, { once: true })
        queue.push(w)
        ticker ??= setInterval(() => round(queue.length), tickMs)
        if (!woken.has(signal)) {
          unwoken++
          return
        }
        // Woken this round, it found nothing it could use: the next one not yet woken gets its turn.
        if (unwoken === 0 || free() <= 0) return
        const next = queue.findIndex((x) => !woken.has(x.signal))
        if (next >= 0) release(queue.splice(next, 1))
      })
    },
    get waiting() {
      return queue.length
    },
    stop() {
      stopped = true
      for (const [target, type] of triggers) target.removeEventListener(type, onTrigger)
      const all = queue
      queue = []
      release(all)
    },
  }
}
